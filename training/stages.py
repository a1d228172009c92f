"""Pipeline stages: contiguous layer ranges, and a module holding only one stage's parameters.

Stage 0 owns the embedding, the last stage the final norm, head and loss; a one-stage split is
the whole model. With a bottleneck (`ModelConfig.bottleneck`, IOTA's activation compression) each
boundary k has a learned down-projection `squeeze.k` at the end of stage k and an up-projection
`expand.k` at the start of stage k + 1, so only `bottleneck` values per token cross it, forward
and (as their gradient) backward. Parameter names are the whole model's
(`layers.5.mlp.w2.weight`), so a stage's state dict is a slice of the whole model's and is
initialised identically for the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from training.model import Block, ModelConfig, RMSNorm, Rotary, init_weights, lm_loss


@dataclass(frozen=True, slots=True)
class StageSpec:
    index: int
    n_stages: int
    layers: range

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.n_stages - 1


def split_layers(n_layers: int, n_stages: int) -> list[StageSpec]:
    """Contiguous, balanced split; earlier stages take the one extra layer when uneven."""
    if not 1 <= n_stages <= n_layers:
        raise ValueError(f"cannot split {n_layers} layers into {n_stages} stages")
    base, extra = divmod(n_layers, n_stages)
    specs, start = [], 0
    for index in range(n_stages):
        stop = start + base + (1 if index < extra else 0)
        specs.append(StageSpec(index=index, n_stages=n_stages, layers=range(start, stop)))
        start = stop
    return specs


class StageModule(nn.Module):
    """The layers of one stage; forward maps token ids or activations to activations or loss."""

    def __init__(self, config: ModelConfig, spec: StageSpec, *, seed: int | None = 0) -> None:
        super().__init__()
        if spec.layers.stop > config.n_layers:
            raise ValueError(f"stage layers {spec.layers} exceed the model's {config.n_layers}")
        self.config = config
        self.spec = spec
        if spec.is_first:
            self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.rotary = Rotary(config)
        self.layers = nn.ModuleDict({str(i): Block(config) for i in spec.layers})
        width = config.bottleneck
        if width and not spec.is_first:
            boundary = str(spec.index - 1)
            self.expand = nn.ModuleDict({boundary: nn.Linear(width, config.dim, bias=False)})
        if width and not spec.is_last:
            boundary = str(spec.index)
            self.squeeze = nn.ModuleDict({boundary: nn.Linear(config.dim, width, bias=False)})
        if spec.is_last:
            self.norm = RMSNorm(config.dim, config.norm_eps)
            self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if seed is not None:
            init_weights(self, seed, config)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Activations (batch, seq, wire_dim); on the last stage logits, or the loss given
        targets."""
        if self.spec.is_first:
            if x.is_floating_point():
                raise TypeError("stage 0 takes integer token ids")
            x = self.embed(x)
        elif hasattr(self, "expand"):
            x = self.expand[str(self.spec.index - 1)](x)
        cos, sin = self.rotary(x.shape[1])
        for block in self.layers.values():
            x = block(x, cos, sin)
        if not self.spec.is_last:
            return self.squeeze[str(self.spec.index)](x) if hasattr(self, "squeeze") else x
        logits: torch.Tensor = self.head(self.norm(x))
        return logits if targets is None else lm_loss(logits, targets)


def build_stages(config: ModelConfig, n_stages: int, *, seed: int = 0) -> list[StageModule]:
    """All stages of a split, each built on its own as a miner would."""
    return [StageModule(config, s, seed=seed) for s in split_layers(config.n_layers, n_stages)]


def full_model_forward(
    stages: Sequence[StageModule], input_ids: torch.Tensor, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Chain the stages in order: the same result as the whole model in one module."""
    if [s.spec.index for s in stages] != list(range(len(stages))) or any(
        s.spec.n_stages != len(stages) for s in stages
    ):
        raise ValueError("stages must be a complete split, in order")
    x = input_ids
    for stage in stages[:-1]:
        x = stage(x)
    out: torch.Tensor = stages[-1](x, targets)
    return out
