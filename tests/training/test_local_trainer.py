import time

import numpy as np
import torch

from training.data import Dataset
from training.engine import EngineConfig, StageEngine
from training.evaluate import EvalConfig, evaluate
from training.local_trainer import TrainConfig, run_micro_batch, schedule_position, train_local
from training.model import ModelConfig
from training.stages import build_stages


def _config(steps: int, n_stages: int = 1, accumulate: int = 1) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        n_stages=n_stages,
        batch_size=8,
        seq_len=64,
        batches_per_window=16,
        engine=EngineConfig(lr=3e-3, warmup_steps=3, accumulate=accumulate, device="cpu"),
    )


def test_loss_falls(dataset: Dataset, tiny: ModelConfig) -> None:
    started = time.perf_counter()
    result = train_local(dataset, tiny, _config(40, n_stages=2))
    assert time.perf_counter() - started < 20
    assert len(result.losses) == 40 and result.tokens == 40 * 8 * 64
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10]) - 0.5
    assert result.tokens_per_s > 0
    trained = evaluate(result.loss_fn(), dataset, EvalConfig(batch_size=8, seq_len=64))
    assert all(r.perplexity < tiny.vocab_size * 0.5 for r in trained.values())


def _to_wire(t: torch.Tensor) -> torch.Tensor:
    """What a network hop does to a tensor: raw bytes out, a new tensor in."""
    return torch.frombuffer(bytearray(t.numpy().tobytes()), dtype=t.dtype).reshape(t.shape)


def test_a_pipeline_of_the_same_engines_reproduces_the_local_run(
    dataset: Dataset, tiny: ModelConfig
) -> None:
    config = _config(4, n_stages=2, accumulate=2)
    local = train_local(dataset, tiny, config)
    engines = [StageEngine(s, config.engine) for s in build_stages(tiny, 2, seed=config.seed)]
    losses = []
    for k in range(8):
        window, index = schedule_position(k, config.batches_per_window)
        ids, targets = dataset.batch(0, window, index, batch_size=8, seq_len=64)
        act = _to_wire(engines[0].forward((window, index), ids))
        losses.append(float(engines[1].forward((window, index), act, targets)))
        grad = engines[1].backward_from_loss((window, index))
        assert grad is not None
        engines[0].backward((window, index), _to_wire(grad))
    assert [(a + b) / 2 for a, b in zip(losses[::2], losses[1::2], strict=True)] == local.losses
    assert [e.weights_digest() for e in engines] == [e.weights_digest() for e in local.engines]


def test_training_continues_from_given_engines(dataset: Dataset, tiny: ModelConfig) -> None:
    whole = train_local(dataset, tiny, _config(4))
    half = train_local(dataset, tiny, _config(2))
    rest = train_local(dataset, tiny, _config(2), engines=half.engines)
    assert half.losses + rest.losses == whole.losses
    assert rest.engines[0].weights_digest() == whole.engines[0].weights_digest()
    assert (
        run_micro_batch(rest.engines, "extra", *dataset.batch(9, 0, 0, batch_size=2, seq_len=16))
        > 0
    )
