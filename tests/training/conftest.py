"""Shared fixtures: a small built dataset (once per session) and deterministic torch settings."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from training.data import DataConfig, Dataset, build_dataset
from training.determinism import set_determinism
from training.model import ModelConfig
from training.presets import preset


def small_data_config(cache_dir: Path) -> DataConfig:
    return DataConfig(
        cache_dir=cache_dir,
        vocab_size=512,
        code_max_bytes=250_000,
        prose_max_bytes=120_000,
        math_documents=150,
    )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def dataset(data_dir: Path) -> Dataset:
    return build_dataset(small_data_config(data_dir))


@pytest.fixture
def tiny() -> ModelConfig:
    return preset("tiny")


@pytest.fixture(autouse=True)
def deterministic() -> Iterator[None]:
    """One intra-op thread: OpenMP's spinning threads collapse when other processes share the
    two cores (a 10x slowdown observed), and the training tests must stay fast."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    set_determinism(0, threads=1)
    yield
    torch.use_deterministic_algorithms(was_deterministic)
    torch.set_num_threads(threads)
