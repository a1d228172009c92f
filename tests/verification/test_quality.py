"""The quality screen: what a delta alone does to the held-out loss, and how far a start is from
the merged weights it was given."""

import pytest
import torch

from tests.verification.kit import SPEC
from training.data import Dataset
from training.engine import StageEngine
from training.local_trainer import run_micro_batch
from training.stages import build_stages, full_model_forward
from verification.checkpoints import build_engine, checkpoint_bytes
from verification.quality import Contribution, heldout_batch, screen_window

SECRET = bytes(range(32))


def engines() -> list[StageEngine]:
    return [build_engine(SPEC, s, None) for s in range(SPEC.n_stages)]


def shifted(stage: int, start: bytes | None, by: float, *, noise: float = 0.0) -> bytes:
    engine = build_engine(SPEC, stage, start)
    g = torch.Generator().manual_seed(stage)
    engine.load_state_dict(
        {
            k: v + by + noise * torch.randn(v.shape, generator=g)
            for k, v in engine.state_dict().items()
        }
    )
    return checkpoint_bytes(engine)


def test_heldout_batch_is_a_function_of_the_secret_and_window(dataset: Dataset) -> None:
    ids, targets = heldout_batch(dataset, SECRET, 3, batch_size=4, seq_len=16)
    again, _ = heldout_batch(dataset, SECRET, 3, batch_size=4, seq_len=16)
    other, _ = heldout_batch(dataset, bytes(32), 3, batch_size=4, seq_len=16)
    later, _ = heldout_batch(dataset, SECRET, 4, batch_size=4, seq_len=16)
    assert ids.shape == targets.shape == (4, 16)
    assert torch.equal(ids, again)
    assert not torch.equal(ids, other) and not torch.equal(ids, later)
    assert torch.equal(ids[:, 1:], targets[:, :-1])


def test_screen_measures_each_delta_alone_against_the_whole_model(dataset: Dataset) -> None:
    batch = heldout_batch(dataset, SECRET, 0, batch_size=4, seq_len=SPEC.seq_len)
    trained = engines()
    for i in range(2 * SPEC.accumulate):  # honest steps, on the screening batch itself
        run_micro_batch(trained, (0, i), *batch)
    ends = [checkpoint_bytes(e) for e in trained]
    contributions = [
        Contribution("honest1", 1, None, ends[1]),
        Contribution("honest2", 2, None, ends[2]),
        Contribution("lazy", 0, None, checkpoint_bytes(build_engine(SPEC, 0, None))),
        Contribution("random", 1, None, shifted(1, None, 0.0, noise=0.5)),
        Contribution("missing", 2, None, None),
        Contribution("behind", 0, shifted(0, None, 3 * SPEC.lr), shifted(0, None, 3 * SPEC.lr)),
    ]
    screens = screen_window(SPEC, {}, contributions, batch)
    seed = build_stages(SPEC.model_config(), SPEC.n_stages, seed=SPEC.seed)
    with torch.no_grad():
        before = float(full_model_forward(seed, *batch))
    assert all(s.loss_before == pytest.approx(before, rel=1e-6) for s in screens.values())
    # The delta of stage 1 alone, recomputed on a whole model built from scratch.
    alone = build_stages(SPEC.model_config(), SPEC.n_stages, seed=SPEC.seed)
    alone[1].load_state_dict(trained[1].state_dict())
    with torch.no_grad():
        recomputed = float(full_model_forward(alone, *batch))
    assert screens["honest1"].loss_after == pytest.approx(recomputed, rel=1e-5)
    assert screens["honest1"].improvement > 0 and screens["honest2"].improvement > 0
    assert screens["lazy"].improvement == 0.0 and screens["lazy"].steps_behind == 0.0
    assert screens["random"].improvement < 0
    assert screens["missing"].missing and screens["missing"].improvement == 0.0
    # Started 3 learning rates away from the merged (seed) weights; its own delta is zero.
    assert screens["behind"].steps_behind == pytest.approx(3.0, rel=1e-3)
    assert screens["behind"].improvement == pytest.approx(0.0, abs=1e-6)


def test_a_delta_that_breaks_the_model_is_the_worst(dataset: Dataset) -> None:
    batch = heldout_batch(dataset, SECRET, 1, batch_size=2, seq_len=SPEC.seq_len)
    engine = build_engine(SPEC, 2, None)
    engine.load_state_dict(
        {k: torch.full_like(v, float("nan")) for k, v in engine.state_dict().items()}
    )
    screens = screen_window(
        SPEC, {}, [Contribution("nan", 2, None, checkpoint_bytes(engine))], batch
    )
    assert screens["nan"].loss_after == float("inf")
    assert screens["nan"].improvement == float("-inf")


def test_a_record_round_trips(dataset: Dataset) -> None:
    batch = heldout_batch(dataset, SECRET, 2, batch_size=2, seq_len=SPEC.seq_len)
    s = screen_window(SPEC, {}, [Contribution("m", 1, None, shifted(1, None, 0.01))], batch)["m"]
    assert type(s).from_record("m", s.to_record()) == s
