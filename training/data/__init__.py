"""Offline multi-domain corpus, BPE tokenizer and the deterministic batch schedule."""

from training.data.build import build_dataset
from training.data.dataset import DataConfig, Dataset
from training.data.sources import UserCorpus
from training.data.tokenizer import BPETokenizer

__all__ = ["BPETokenizer", "DataConfig", "Dataset", "UserCorpus", "build_dataset"]
