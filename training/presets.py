"""Named model sizes: `tiny` for tests, `small` for the CPU devnet, larger ones for GPUs."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from training.model import ModelConfig, Transformer

PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        vocab_size=512, dim=64, n_layers=4, n_heads=4, ffn_hidden=176, max_seq_len=128
    ),
    "small": ModelConfig(
        vocab_size=4096, dim=288, n_layers=8, n_heads=6, ffn_hidden=768, max_seq_len=256
    ),
    "base-125m": ModelConfig(
        vocab_size=32_000, dim=768, n_layers=12, n_heads=12, ffn_hidden=1792, max_seq_len=1024
    ),
    "large-1b": ModelConfig(
        vocab_size=32_000, dim=2048, n_layers=18, n_heads=16, ffn_hidden=5632, max_seq_len=2048
    ),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A copy of the named preset, with fields replaced by `overrides` (e.g. vocab_size)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
    return dataclasses.replace(base, **overrides)


def parameter_count(config: ModelConfig) -> int:
    """Exact number of parameters of the whole model (built on the meta device, no memory)."""
    with torch.device("meta"):
        model = Transformer(config, seed=None)
    return sum(p.numel() for p in model.parameters())
