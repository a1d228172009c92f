"""Held-out loss and perplexity per domain, for anything that maps (input_ids, targets) to a loss.

The loss callable may be a whole model or a chain of stages (`chained_loss_fn`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from training.data.dataset import Dataset
from training.stages import StageModule, full_model_forward

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(kw_only=True, slots=True)
class EvalConfig:
    batch_size: int = 8
    seq_len: int = 256
    max_batches: int | None = 8


@dataclass(frozen=True, slots=True)
class DomainEval:
    loss: float
    perplexity: float
    sequences: int


def chained_loss_fn(stages: Sequence[StageModule]) -> LossFn:
    """Loss of the stages chained in one process, on the first stage's device."""
    dev = next(stages[0].parameters()).device

    def loss(input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return full_model_forward(stages, input_ids.to(dev), targets.to(dev))

    return loss


@torch.no_grad()
def evaluate(
    loss_fn: LossFn,
    dataset: Dataset,
    config: EvalConfig | None = None,
    *,
    domains: Iterable[str] | None = None,
) -> dict[str, DomainEval]:
    """Mean held-out loss (weighted by sequences) and its perplexity, per domain."""
    config = config or EvalConfig()
    out = {}
    for domain in dataset.domains if domains is None else domains:
        total, count = 0.0, 0
        for input_ids, targets in dataset.eval_batches(
            domain,
            batch_size=config.batch_size,
            seq_len=config.seq_len,
            max_batches=config.max_batches,
        ):
            total += float(loss_fn(input_ids, targets)) * input_ids.shape[0]
            count += input_ids.shape[0]
        if count == 0:
            raise ValueError(f"domain {domain!r} has no held-out sequence of {config.seq_len}")
        out[domain] = DomainEval(
            loss=total / count, perplexity=math.exp(total / count), sequences=count
        )
    return out


def mean_loss(results: Mapping[str, DomainEval]) -> float:
    """Equal-weight mean over domains (the mixed held-out score)."""
    return sum(r.loss for r in results.values()) / len(results)
