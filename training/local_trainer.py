"""Single-process training of the chained stage engines on the deterministic schedule.

The reference a networked pipeline is measured against: the same `StageEngine`s, the same
schedule and optimizer settings, the same call order per micro-batch (forward through the stages,
backward from the loss back to stage 0), so a pipeline that passes the same tensors between the
same engines reproduces this loss curve exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from training.data.dataset import Dataset
from training.engine import BatchId, EngineConfig, StageEngine
from training.evaluate import LossFn, chained_loss_fn
from training.model import ModelConfig
from training.stages import build_stages


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    steps: int
    n_stages: int = 1
    seed: int = 0
    data_seed: int = 0
    batch_size: int = 8
    seq_len: int = 256
    batches_per_window: int = 100
    mixture: dict[str, float] | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass(kw_only=True, slots=True)
class TrainResult:
    losses: list[float]
    """Mean training loss of each optimizer step's micro-batches."""
    tokens: int
    seconds: float
    engines: list[StageEngine]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def loss_fn(self) -> LossFn:
        return chained_loss_fn([e.module for e in self.engines])


def schedule_position(micro_batch: int, batches_per_window: int) -> tuple[int, int]:
    """(window, batch index) of the k-th micro-batch of a run."""
    return divmod(micro_batch, batches_per_window)


def run_micro_batch(
    engines: Sequence[StageEngine],
    batch_id: BatchId,
    input_ids: torch.Tensor,
    targets: torch.Tensor,
) -> float:
    """One micro-batch through the chain: forward stage by stage, backward in reverse."""
    x = input_ids
    for engine in engines[:-1]:
        x = engine.forward(batch_id, x)
    loss = engines[-1].forward(batch_id, x, targets)
    grad = engines[-1].backward_from_loss(batch_id)
    for engine in reversed(engines[:-1]):
        assert grad is not None
        grad = engine.backward(batch_id, grad)
    return float(loss)


def train_local(
    dataset: Dataset,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    engines: Sequence[StageEngine] | None = None,
) -> TrainResult:
    """Train for `config.steps` optimizer steps (each of `engine.accumulate` micro-batches)."""
    if model_config.vocab_size < dataset.vocab_size:
        raise ValueError(
            f"model vocab {model_config.vocab_size} < tokenizer's {dataset.vocab_size}"
        )
    if engines is None:
        stages = build_stages(model_config, config.n_stages, seed=config.seed)
        engines = [StageEngine(stage, config.engine) for stage in stages]
    accumulate = engines[-1].config.accumulate
    first = engines[-1].backward_passes
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(config.steps):
        total = 0.0
        for micro in range(accumulate):
            window, index = schedule_position(
                first + step * accumulate + micro, config.batches_per_window
            )
            input_ids, targets = dataset.batch(
                config.data_seed,
                window,
                index,
                batch_size=config.batch_size,
                seq_len=config.seq_len,
                mixture=config.mixture,
            )
            total += run_micro_batch(engines, (window, index), input_ids, targets)
        losses.append(total / accumulate)
    seconds = time.perf_counter() - started
    tokens = config.steps * accumulate * config.batch_size * config.seq_len
    return TrainResult(losses=losses, tokens=tokens, seconds=seconds, engines=list(engines))
