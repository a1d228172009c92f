from pathlib import Path

import pytest
import torch

from training.digest import tensor_digest
from training.engine import BatchNotCached, EngineConfig, StageEngine
from training.local_trainer import run_micro_batch
from training.model import ModelConfig, Transformer
from training.stages import build_stages


def _batch(
    config: ModelConfig, seed: int, batch: int = 2, seq: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (batch, seq + 1), generator=g)
    return ids[:, :-1], ids[:, 1:]


def _engines(config: ModelConfig, n_stages: int, **engine: object) -> list[StageEngine]:
    cfg = EngineConfig(device="cpu", **engine)  # type: ignore[arg-type]
    return [StageEngine(stage, cfg) for stage in build_stages(config, n_stages, seed=1)]


def test_two_stage_gradients_equal_whole_model_autograd(tiny: ModelConfig) -> None:
    ids, targets = _batch(tiny, 0)
    whole = Transformer(tiny, seed=1)
    (whole(ids, targets) / 2).backward()
    expected = {n: p.grad for n, p in whole.named_parameters()}
    first, last = _engines(tiny, 2, accumulate=2)
    loss = last.forward("b", first.forward("b", ids), targets)
    assert torch.equal(loss, whole(ids, targets).detach())
    grad = last.backward_from_loss("b")
    assert grad is not None and grad.shape == (2, 16, tiny.dim)
    assert first.backward("b", grad) is None
    assert first.weights_version == last.weights_version == 0  # accumulating, no step yet
    for engine in (first, last):
        for name, param in engine.module.named_parameters():
            assert param.grad is not None
            torch.testing.assert_close(param.grad, expected[name], rtol=1e-4, atol=1e-6)


def test_optimizer_steps_every_accumulate_backward_passes(tiny: ModelConfig) -> None:
    (engine,) = _engines(tiny, 1, accumulate=3)
    digests = [engine.weights_digest()]
    for k in range(7):
        engine.forward(k, *_batch(tiny, k))
        engine.backward_from_loss(k)
        digests.append(engine.weights_digest())
        assert engine.weights_version == (k + 1) // 3
        assert engine.pending == (k + 1) % 3
    changed = [i for i in range(1, 8) if digests[i] != digests[i - 1]]
    assert changed == [3, 6]


def test_cache_is_bounded_and_errors_are_clear(tiny: ModelConfig) -> None:
    first, last = _engines(tiny, 2, cache_size=2)
    for k in range(3):
        first.forward(k, _batch(tiny, k)[0])
    grad = torch.zeros(2, 16, tiny.dim)
    with pytest.raises(BatchNotCached, match="evicted"):
        first.backward(0, grad)
    with pytest.raises(BatchNotCached, match="never forwarded"):
        first.backward("nope", grad)
    first.backward(2, grad)
    with pytest.raises(BatchNotCached, match="already backpropagated"):
        first.backward(2, grad)
    with pytest.raises(ValueError, match="targets"):
        last.forward(0, torch.zeros(2, 16, tiny.dim))
    with pytest.raises(ValueError, match="grad_output"):
        first.backward(1)
    with pytest.raises(ValueError, match="shape"):
        first.backward(1, torch.zeros(2, 15, tiny.dim))
    first.backward(1, grad)  # the refused calls left batch 1 cached


def _replay(config: ModelConfig, **engine: object) -> tuple[list[str], list[str]]:
    engines = _engines(config, 2, accumulate=1, **engine)
    outputs = []
    # Forward two batches before either backward: the second is backpropagated after a step.
    for k in range(0, 6, 2):
        batches = [_batch(config, k), _batch(config, k + 1)]
        acts = [engines[0].forward(k + j, ids) for j, (ids, _) in enumerate(batches)]
        outputs += [tensor_digest(a) for a in acts]
        for j, (_, targets) in enumerate(batches):
            outputs.append(tensor_digest(engines[1].forward(k + j, acts[j], targets)))
            grad = engines[1].backward_from_loss(k + j)
            assert grad is not None
            outputs.append(tensor_digest(grad))
            engines[0].backward(k + j, grad)
    return outputs, [e.weights_digest() for e in engines]


def test_two_replays_are_bitwise_identical(tiny: ModelConfig) -> None:
    outputs, weights = _replay(tiny)
    assert (outputs, weights) == _replay(tiny)
    assert len(set(outputs)) == len(outputs)  # every activation, loss and gradient differs
    assert weights[0] != _engines(tiny, 2)[0].weights_digest()  # and the weights moved


def test_recompute_on_backward_matches_kept_graph(tiny: ModelConfig) -> None:
    assert _replay(tiny, recompute=True) == _replay(tiny)


def test_save_and_load_resume_identically(tiny: ModelConfig, tmp_path: Path) -> None:
    (a,) = _engines(tiny, 1)
    for k in range(2):
        run_micro_batch([a], k, *_batch(tiny, k))
    a.save(tmp_path / "stage.safetensors")
    (b,) = _engines(tiny, 1)
    b.load(tmp_path / "stage.safetensors")
    assert (b.weights_version, b.weights_digest()) == (a.weights_version, a.weights_digest())
    for engine in (a, b):
        run_micro_batch([engine], 9, *_batch(tiny, 9))
    assert a.weights_digest() == b.weights_digest()
    weights = a.state_dict()
    (c,) = _engines(tiny, 1)
    c.load_state_dict(weights)
    assert c.weights_digest() == a.weights_digest()
    with pytest.raises(ValueError, match="missing"):
        c.load_state_dict({k: v for k, v in weights.items() if k != "head.weight"})


def test_save_refuses_pending_gradients(tiny: ModelConfig, tmp_path: Path) -> None:
    (engine,) = _engines(tiny, 1, accumulate=2)
    run_micro_batch([engine], 0, *_batch(tiny, 0))
    with pytest.raises(RuntimeError, match="await the next optimizer step"):
        engine.save(tmp_path / "stage.safetensors")
