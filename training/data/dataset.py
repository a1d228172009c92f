"""The built dataset: tokenizer plus packed token streams per domain and split, with its digest.

Built and cached by `training.data.build.build_dataset`. The digest covers the tokenizer and every
token stream: nodes of one run must agree on it (the stdlib differs between Python versions, so a
run should publish it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data import schedule
from training.data.schedule import Stream
from training.data.sources import UserCorpus
from training.data.tokenizer import BPETokenizer

SPLITS = ("train", "heldout")


@dataclass(kw_only=True, slots=True)
class DataConfig:
    cache_dir: Path
    vocab_size: int = 4096
    builtin: tuple[str, ...] = ("code", "prose", "math")
    code_max_bytes: int = 8_000_000
    code_max_file_bytes: int = 250_000
    prose_max_bytes: int | None = None
    math_documents: int = 4000
    math_seed: int = 0
    heldout_fraction: float = 0.1
    user_corpora: tuple[UserCorpus, ...] = ()
    # A directory holding a `tokenizer.json` (e.g. the run's) to use instead of training one.
    tokenizer_path: Path | None = None

    def __post_init__(self) -> None:
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")


class Dataset:
    def __init__(
        self, tokenizer: BPETokenizer, streams: Mapping[tuple[str, str], Stream], manifest: Any
    ) -> None:
        self.tokenizer = tokenizer
        self.domains = tuple(sorted({d for d, _ in streams}))
        self.train = {d: streams[d, "train"] for d in self.domains}
        self.heldout = {d: streams[d, "heldout"] for d in self.domains}
        self.manifest: dict[str, Any] = manifest
        self.digest = _digest(tokenizer, streams)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def batch(
        self,
        seed: int,
        window: int,
        batch_index: int,
        *,
        batch_size: int,
        seq_len: int,
        mixture: Mapping[str, float] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch `batch_index` of `window`: a pure function of the arguments."""
        return schedule.batch(
            self.train,
            seed,
            window,
            batch_index,
            batch_size=batch_size,
            seq_len=seq_len,
            mixture=mixture,
        )

    def eval_batches(
        self, domain: str, *, batch_size: int, seq_len: int, max_batches: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Held-out batches of one domain, always the same ones in the same order."""
        return schedule.sequential_batches(
            self.heldout[domain], batch_size=batch_size, seq_len=seq_len, max_batches=max_batches
        )


def _digest(tokenizer: BPETokenizer, streams: Mapping[tuple[str, str], Stream]) -> str:
    h = hashlib.sha256(tokenizer.to_json().encode())
    for domain, split in sorted(streams):
        arr = np.ascontiguousarray(streams[domain, split], dtype="<u4")
        h.update(f"{domain}.{split}:{arr.size}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()
