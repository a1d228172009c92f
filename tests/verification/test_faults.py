"""Each cheating miner, fabricated in a real pipeline, fails its audit; its honest neighbours
(fed its garbage) pass; exact and tolerant comparisons both catch it, outside the calibrated
thresholds (far outside, but for bf16 autocast compute); honest replays on other settings pass."""

import pytest
import torch

from tests.verification.faults import FAULTS, FreeRider, Noisy
from tests.verification.kit import SPEC, WindowRun, holding, run_window
from training.data.dataset import Dataset
from training.determinism import set_determinism
from verification.compare import DEFAULT_TOLERANCE, Comparison
from verification.replay import BACKWARD, replay
from verification.scores import Decay, WindowWork, incentives, window_score
from verification.verdict import Outcome, Reason, Verdict, judge

CASES = [
    ("lazy", 0), ("lazy", 1), ("lazy", 2), ("passthrough", 1), ("random", 0), ("random", 1),
    ("random", 2), ("stale", 0), ("stale", 1), ("stale", 2), ("copycat", 0), ("copycat", 1),
    ("copycat", 2), ("nan", 0), ("nan", 1), ("nan", 2), ("bf16", 0), ("bf16", 1), ("bf16", 2),
]  # fmt: skip


def cheating_window(honest: list[WindowRun], dataset: Dataset, kind: str, stage: int) -> WindowRun:
    """Window 1 from the honest window-0 checkpoints, with a `kind` cheater on `stage`."""
    return run_window(SPEC, dataset, 1, list(honest[0].ends), {stage: FAULTS[kind]()})


def audit(run: WindowRun, dataset: Dataset, stage: int, *, exact: bool) -> Verdict:
    units = run.audit_units(stage, claims=not exact)
    result = replay(SPEC, stage, run.starts[stage], units, dataset)
    return judge(result, validator="v", miner=f"m{stage}", window=run.window, stage=stage,
                 exact=exact, reported_checkpoint=run.ends[stage])  # fmt: skip


def far_outside(c: Comparison, factor: float = 10.0) -> bool:
    t = DEFAULT_TOLERANCE
    if not (c.finite and c.shape_ok):
        return True
    if c.numel == 1:
        return c.rel_l2 >= factor * t.max_rel_scalar
    return c.rel_l2 >= factor * t.max_rel_l2 or 1 - c.cosine >= factor * (1 - t.min_cosine)


@pytest.mark.parametrize(("kind", "stage"), CASES)
def test_cheater_fails_and_neighbours_pass(
    honest: list[WindowRun], dataset: Dataset, kind: str, stage: int
) -> None:
    run = cheating_window(honest, dataset, kind, stage)
    exact = audit(run, dataset, stage, exact=True)
    assert exact.outcome is Outcome.FAIL, exact
    expected = {Reason.OUTPUT_MISMATCH, Reason.WEIGHTS_MISMATCH}
    assert exact.reason in expected, exact
    tolerant = audit(run, dataset, stage, exact=False)
    assert tolerant.outcome is Outcome.FAIL, tolerant
    wanted = Reason.NON_FINITE if kind == "nan" else Reason.OUT_OF_TOLERANCE
    assert tolerant.reason in {wanted, Reason.WEIGHTS_MISMATCH}, tolerant
    # Every unit the cheater fabricated is far outside the thresholds, not just over them.
    result = replay(SPEC, stage, run.starts[stage], run.audit_units(stage, claims=True), dataset)
    off = [r.comparison for r in result.units if r.comparison is not None]
    if kind == "bf16":  # its loss is within honest noise: the tensors are what refuse it
        off = [c for c in off if c.numel > 1]
    assert off and all(far_outside(c) for c in off)
    if tolerant.reason is Reason.WEIGHTS_MISMATCH:  # stale stage 0: no outputs on backward
        assert kind == "stale"
    # The miner's score for the window is forfeited.
    work = WindowWork(f"m{stage}", 1, exact.backward_units, (exact.outcome,))
    assert window_score(work) == 0
    for other in range(SPEC.n_stages):
        if other != stage and kind != "nan":  # envelopes refuse NaN: neighbours never see it
            verdict = audit(run, dataset, other, exact=True)
            assert verdict.outcome is Outcome.PASS, (other, verdict)


def test_stale_miner_on_old_weights_fails_from_its_first_unit(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    """A miner that starts window 1 from window 0's start weights instead of its checkpoint."""
    holdings = [holding(SPEC, dataset, s, honest[0].ends[s]) for s in range(SPEC.n_stages)]
    holdings[1] = holding(SPEC, dataset, 1, None)
    run = run_window(SPEC, dataset, 1, list(honest[0].ends), holdings=holdings)
    verdict = audit(run, dataset, 1, exact=True)
    assert (verdict.outcome, verdict.reason, verdict.first_bad_unit) == (
        Outcome.FAIL, Reason.OUTPUT_MISMATCH, 0)  # fmt: skip
    units = run.audit_units(1)
    result = replay(SPEC, 1, run.starts[1], units, dataset)
    assert result.units[0].weights_ok is False  # its receipts name the weights it really used


def test_free_rider_scores_nothing_and_fails_with_a_borrowed_checkpoint(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    run = run_window(SPEC, dataset, 1, list(honest[0].ends), {1: FreeRider()})
    units = run.audit_units(1)
    assert units and all(u.direction != BACKWARD for u in units)
    # Its forwards are real, so the replay agrees with them ...
    verdict = audit(run, dataset, 1, exact=True)
    assert verdict.outcome is Outcome.PASS and verdict.backward_units == 0
    # ... but S counts backward passes only, so it earns nothing while the others do.
    records = [WindowWork(f"m{s}", 1, audit(run, dataset, s, exact=True).backward_units)
               for s in range(SPEC.n_stages)]  # fmt: skip
    scores = incentives(records, 1, Decay(t_decay=2))
    assert scores["m1"] == 0 and scores["m2"] > 0
    # Reporting a trained checkpoint it did not compute (an honest miner's) fails the audit.
    borrowed = honest[1].ends[1]
    result = replay(SPEC, 1, run.starts[1], units, dataset)
    for exact in (True, False):
        verdict = judge(result, validator="v", miner="m1", window=1, stage=1, exact=exact,
                        reported_checkpoint=borrowed)  # fmt: skip
        assert (verdict.outcome, verdict.reason) == (Outcome.FAIL, Reason.WEIGHTS_MISMATCH)


def test_honest_replays_with_other_threads_or_in_float64_pass_tolerant_mode(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    """What a validator on other hardware does: replay with another thread count or in float64.
    The calibrated thresholds accept it at every stage of every window (the bf16 cases above
    are refused by the same thresholds)."""
    for run in honest:
        for stage in range(SPEC.n_stages):
            units = run.audit_units(stage, claims=True)
            for threads, dtype in ((2, torch.float32), (1, torch.float64)):
                set_determinism(threads=threads)
                try:
                    result = replay(SPEC, stage, run.starts[stage], units, dataset, dtype=dtype)
                finally:
                    set_determinism(threads=1)
                verdict = judge(result, validator="v", miner="m", window=run.window, stage=stage,
                                exact=False, reported_checkpoint=run.ends[stage])  # fmt: skip
                assert verdict.outcome is Outcome.PASS, (run.window, stage, dtype, verdict)


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_noise_of_relative_norm_1e_4_is_refused_in_tolerant_mode(
    honest: list[WindowRun], dataset: Dataset, stage: int
) -> None:
    run = run_window(SPEC, dataset, 1, list(honest[0].ends), {stage: Noisy(1e-4)})
    verdict = audit(run, dataset, stage, exact=False)
    assert (verdict.outcome, verdict.reason) == (Outcome.FAIL, Reason.OUT_OF_TOLERANCE), verdict
