"""A run's training spec: what every miner (and auditor) needs to rebuild the same computation.

The orchestrator publishes it (in the signed `Assign` message); a miner builds its stage, data
and optimizer from it alone. `to_record`/`from_record` are the wire form (plain msgpack types).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.data.dataset import DataConfig, Dataset
from training.engine import EngineConfig
from training.model import ModelConfig
from training.presets import PRESETS, preset
from training.wire import WIRE_DTYPES, WireFormat


@dataclass(kw_only=True, slots=True)
class RunSpec:
    model: str = "small"
    """A preset name from `training.presets`; its vocab is the tokenizer's."""
    n_stages: int = 3
    seed: int = 0
    """Weight initialisation seed."""
    data_seed: int = 0
    """Seed of the batch schedule: batch b of window w is a pure function of (data_seed, w, b)."""
    vocab_size: int = 4096
    batch_size: int = 8
    seq_len: int = 128
    batches_per_window: int = 16
    accumulate: int = 4
    """Micro-batches (backward passes) per optimizer step."""
    lr: float = 1e-3
    warmup_steps: int = 0
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    code_max_bytes: int = 8_000_000
    """Corpus size: bytes of standard-library source (code), of documentation (prose; 0 = all)
    and number of generated arithmetic documents (math)."""
    prose_max_bytes: int = 0
    math_documents: int = 4000
    data_digest: str = ""
    """The dataset's digest (tokenizer and token streams); a miner whose data differs refuses."""
    mixture: dict[str, float] = field(default_factory=dict)
    """The run's data mix: weight per domain (code, prose, math); empty = equal weights."""
    compress: int = 0
    """Activation compression at stage boundaries: a learned bottleneck of width
    dim // compress (`ModelConfig.bottleneck`); 0 or 1: none."""
    compress_lr: float = 0.2
    """The bottleneck's learning rate as a share of `lr` (`EngineConfig.bottleneck_lr`)."""
    wire: str = "float32"
    """How activations and gradients cross stage boundaries: "float32", or "int8" with a scale
    per sequence and channel (`training.wire`), a quarter of the bytes."""

    def __post_init__(self) -> None:
        if self.model not in PRESETS:
            raise ValueError(f"unknown model preset {self.model!r}; known: {', '.join(PRESETS)}")
        if min(self.n_stages, self.batch_size, self.seq_len, self.accumulate) < 1:
            raise ValueError("n_stages, batch_size, seq_len and accumulate must be >= 1")
        if self.batches_per_window < 1 or self.batches_per_window % self.accumulate:
            raise ValueError(
                f"batches_per_window ({self.batches_per_window}) must be a positive multiple "
                f"of accumulate ({self.accumulate}), so optimizer steps align with windows"
            )
        if self.seq_len > PRESETS[self.model].max_seq_len:
            raise ValueError(f"seq_len {self.seq_len} > {self.model}'s max_seq_len")
        if self.compress < 0 or PRESETS[self.model].dim // max(self.compress, 1) < 1:
            raise ValueError(f"compress {self.compress} must be >= 0 and at most the model's dim")
        if not 0 <= self.compress_lr <= 1_000:
            raise ValueError(f"compress_lr {self.compress_lr} must be in [0, 1000]")
        if self.wire not in WIRE_DTYPES:
            raise ValueError(f"wire {self.wire!r} must be one of {', '.join(WIRE_DTYPES)}")
        weights = list(self.mixture.values())
        if weights and (
            any(not isinstance(w, int | float) or w < 0 for w in weights) or sum(weights) <= 0
        ):
            raise ValueError(f"mixture weights must be >= 0 with a positive sum: {self.mixture}")

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    def batch(self, dataset: Dataset, window: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch `index` of `window` under this run's schedule and data mix."""
        return dataset.batch(
            self.data_seed,
            window,
            index,
            batch_size=self.batch_size,
            seq_len=self.seq_len,
            mixture=self.mixture or None,
        )

    def model_config(self) -> ModelConfig:
        dim = PRESETS[self.model].dim
        bottleneck = dim // self.compress if self.compress > 1 else 0
        return preset(self.model, vocab_size=self.vocab_size, bottleneck=bottleneck)

    def wire_format(self) -> WireFormat:
        """The format of every activation and gradient exchanged between neighbouring stages."""
        shape = (self.batch_size, self.seq_len, self.model_config().wire_dim)
        return WireFormat(shape=shape, dtype=self.wire)

    def engine_config(self, *, device: str | None = None, cache_size: int = 8) -> EngineConfig:
        return EngineConfig(
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            accumulate=self.accumulate,
            cache_size=cache_size,
            device=device,
            bottleneck_lr=self.compress_lr,
        )

    def data_config(self, cache_dir: Path) -> DataConfig:
        return DataConfig(
            cache_dir=cache_dir,
            vocab_size=self.vocab_size,
            code_max_bytes=self.code_max_bytes,
            prose_max_bytes=self.prose_max_bytes or None,
            math_documents=self.math_documents,
        )

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunSpec:
        """Raises ValueError for unknown keys, wrong types or invalid values."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(record) - set(names)
        if unknown:
            raise ValueError(f"run spec: unknown keys {sorted(unknown)}")
        for key, value in record.items():
            want = type(getattr(cls(), key))
            ok = isinstance(value, want) or (want is float and isinstance(value, int))
            if not ok or isinstance(value, bool):
                raise ValueError(f"run spec: {key} must be {want.__name__}")
        return cls(**record)
