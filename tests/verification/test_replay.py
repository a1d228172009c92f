"""Replaying honest windows: bitwise equal to the miner's receipts, from the seed or a checkpoint,
with the miner's digest conventions; and the replay's behaviour on missing or bad evidence."""

from dataclasses import replace

import pytest
import torch

from p2p.envelope import digest
from p2p.tensors import TensorPayload
from tests.verification.kit import SPEC, WindowRun
from training.data.dataset import Dataset
from verification.calibrate import record_window
from verification.checkpoints import (
    build_engine,
    checkpoint_digest,
    checkpoint_weights,
    compare_weights,
)
from verification.replay import BACKWARD, FORWARD, replay
from verification.verdict import Outcome, Reason, judge


@pytest.mark.parametrize("window", [0, 1])
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_honest_window_replays_bitwise(
    honest: list[WindowRun], dataset: Dataset, window: int, stage: int
) -> None:
    run = honest[window]
    units = run.audit_units(stage)
    result = replay(SPEC, stage, run.starts[stage], units, dataset)
    assert result.complete and len(result.units) == len(units) == 2 * SPEC.batches_per_window
    assert all(r.match and r.input_ok and r.weights_ok for r in result.units)
    end = run.ends[stage]
    assert end is not None and result.weights_digest == checkpoint_digest(end)
    start = run.starts[stage]
    if start is not None:
        assert result.start_weights_digest == checkpoint_digest(start)
    assert result.cpu_seconds > 0
    verdict = judge(result, validator="v", miner="m", window=window, stage=stage,
                    reported_checkpoint=end)  # fmt: skip
    assert (verdict.outcome, verdict.reason) == (Outcome.PASS, Reason.OK)
    assert verdict.units_audited == len(units)
    assert verdict.backward_units == SPEC.batches_per_window


def test_digest_conventions(honest: list[WindowRun], dataset: Dataset) -> None:
    """Stage 0's input is the token ids, the last stage's output the float32 loss, stage 0's
    backward output empty; and calibrate's recorder makes the miner's very receipts."""
    run = honest[0]
    first = run.units[0][0]
    ids, _ = dataset.batch(SPEC.data_seed, 0, 0, batch_size=SPEC.batch_size, seq_len=SPEC.seq_len)
    assert first.unit.input_digest == digest(TensorPayload.from_torch(ids).data)
    loss = run.units[2][0].unit
    assert loss.direction == FORWARD and len(loss.outputs) == 4 and loss.loss is not None
    assert loss.output_digest == digest(
        torch.tensor([loss.loss], dtype=torch.float32).numpy().tobytes()
    )
    assert run.units[2][1].unit.input_digest == loss.output_digest
    backs = [r.unit for r in run.units[0] if r.unit.direction == BACKWARD]
    assert backs and all(u.output_digest == digest(b"") for u in backs)
    engines = [build_engine(SPEC, s, None) for s in range(SPEC.n_stages)]
    mine = record_window(SPEC, dataset, engines, 0)
    for stage in range(SPEC.n_stages):
        theirs = [(r.unit.direction, r.unit.input_digest, r.unit.output_digest,
                   r.unit.weights_version) for r in run.units[stage]]  # fmt: skip
        ours = [(u.direction, u.input_digest, u.output_digest, u.weights_version)
                for u in mine[stage]]  # fmt: skip
        assert ours == theirs


def test_wire_bytes_inputs_and_tensor_inputs_agree(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    run = honest[1]
    units = run.audit_units(1)
    as_tensors = [
        replace(u, inputs=TensorPayload("float32", (2, 16, 64), u.inputs).to_torch())
        if isinstance(u.inputs, bytes) else u
        for u in units
    ]  # fmt: skip
    result = replay(SPEC, 1, run.starts[1], as_tensors, dataset)
    assert all(r.match for r in result.units)


def test_missing_input_stops_the_replay_inconclusive(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    run = honest[1]
    units = run.audit_units(1)
    units[3] = replace(units[3], inputs=None)
    result = replay(SPEC, 1, run.starts[1], units, dataset)
    assert not result.complete and result.stopped == "missing input"
    assert [r.replayed for r in result.units] == [True] * 3 + [False] * (len(units) - 3)
    verdict = judge(result, validator="v", miner="m", window=1, stage=1,
                    reported_checkpoint=run.ends[1])  # fmt: skip
    assert (verdict.outcome, verdict.reason) == (Outcome.INCONCLUSIVE, Reason.MISSING_EVIDENCE)


def test_input_not_matching_its_digest_is_inconsistent_evidence(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    run = honest[1]
    units = run.audit_units(2)
    x = units[0].inputs
    assert isinstance(x, bytes)
    units[0] = replace(units[0], inputs=bytes(len(x)))
    verdict = judge(replay(SPEC, 2, run.starts[2], units, dataset), validator="v", miner="m",
                    window=1, stage=2)  # fmt: skip
    assert (verdict.outcome, verdict.reason) == (Outcome.INCONCLUSIVE,
                                                 Reason.INCONSISTENT_EVIDENCE)  # fmt: skip


def test_a_fault_before_missing_evidence_still_fails(
    honest: list[WindowRun], dataset: Dataset
) -> None:
    run = honest[1]
    units = run.audit_units(1)
    units[0] = replace(units[0], output_digest=digest(b"made up"))
    units[5] = replace(units[5], inputs=None)
    verdict = judge(replay(SPEC, 1, run.starts[1], units, dataset), validator="v", miner="m",
                    window=1, stage=1)  # fmt: skip
    assert (verdict.outcome, verdict.reason, verdict.first_bad_unit) == (
        Outcome.FAIL, Reason.OUTPUT_MISMATCH, 0)  # fmt: skip


def test_swapped_data_on_stage_0_fails(honest: list[WindowRun], dataset: Dataset) -> None:
    """Stage 0's input comes from the schedule: a receipt naming other data is a fault."""
    run = honest[0]
    units = run.audit_units(0)
    other, _ = dataset.batch(9, 0, 0, batch_size=SPEC.batch_size, seq_len=SPEC.seq_len)
    units[0] = replace(units[0], input_digest=digest(TensorPayload.from_torch(other).data))
    verdict = judge(replay(SPEC, 0, None, units, dataset), validator="v", miner="m", window=0,
                    stage=0)  # fmt: skip
    assert (verdict.outcome, verdict.reason) == (Outcome.FAIL, Reason.INPUT_MISMATCH)


def test_backward_without_forward_is_impossible(honest: list[WindowRun], dataset: Dataset) -> None:
    run = honest[0]
    units = run.audit_units(1)
    first_backward = next(i for i, u in enumerate(units) if u.direction == BACKWARD)
    batch = units[first_backward].batch
    units = [u for u in units if not (u.direction == FORWARD and u.batch == batch)]
    verdict = judge(replay(SPEC, 1, None, units, dataset), validator="v", miner="m", window=0,
                    stage=1)  # fmt: skip
    assert (verdict.outcome, verdict.reason) == (Outcome.FAIL, Reason.IMPOSSIBLE_UNIT)


def test_wrong_order_fails(honest: list[WindowRun], dataset: Dataset) -> None:
    """Units out of the miner's order replay differently (optimizer steps move)."""
    run = honest[0]
    units = run.audit_units(0)
    swapped = units[:]
    i = next(i for i, u in enumerate(units) if u.direction == BACKWARD and u.batch == 1)
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]  # B1 (the step) after F2
    assert swapped[i].direction == FORWARD
    verdict = judge(replay(SPEC, 0, None, swapped, dataset), validator="v", miner="m", window=0,
                    stage=0)  # fmt: skip
    assert verdict.outcome is Outcome.FAIL


def test_weights_helpers_agree(honest: list[WindowRun]) -> None:
    end = honest[0].ends[1]
    assert end is not None
    weights = checkpoint_weights(end)
    assert not any(k.startswith("optimizer/") for k in weights)
    assert compare_weights(weights, weights).rel_l2 == 0.0
    other = checkpoint_weights(honest[1].ends[1] or b"")
    assert compare_weights(other, weights).rel_l2 > 1e-3
    assert not compare_weights({}, weights).shape_ok
