"""A run whose activations and gradients cross stage boundaries as int8 (`RunSpec.wire`): a
quarter of the float32 bytes both ways, and audits still replay every stage bit for bit (the
replay re-encodes what it recomputes) and still catch a miner that sends something else."""

import dataclasses

import pytest

from p2p.envelope import digest
from tests.verification.kit import SPEC, run_window
from training.data.dataset import Dataset
from training.determinism import set_determinism
from verification.replay import FORWARD, replay
from verification.verdict import Outcome, Reason, judge

INT8 = dataclasses.replace(SPEC, compress=4, wire="int8")


@pytest.fixture(scope="module")
def int8_run(dataset: Dataset):
    set_determinism(0, threads=1)
    return run_window(INT8, dataset, 0, [None] * INT8.n_stages)


def test_int8_crosses_in_a_quarter_of_the_bytes_plus_scales(int8_run) -> None:
    batch, seq, width = INT8.wire_format().shape
    assert width == 16
    expected = batch * seq * width + batch * 4 * width  # codes, then scales
    for stage in range(INT8.n_stages):
        for recorded in int8_run.units[stage]:
            unit = recorded.unit
            crossing = stage < INT8.n_stages - 1 if unit.direction == FORWARD else stage > 0
            if crossing:
                assert len(unit.outputs) == expected, (stage, unit.direction)
    assert expected == (batch * seq * width * 4) // 4 + batch * 4 * width  # a quarter + scales


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_int8_stages_replay_bitwise(int8_run, dataset: Dataset, stage: int) -> None:
    units = int8_run.audit_units(stage)
    result = replay(INT8, stage, int8_run.starts[stage], units, dataset)
    assert result.complete and all(r.match and r.input_ok and r.weights_ok for r in result.units)
    verdict = judge(result, validator="v", miner="m", window=0, stage=stage,
                    reported_checkpoint=int8_run.ends[stage])  # fmt: skip
    assert (verdict.outcome, verdict.reason) == (Outcome.PASS, Reason.OK)


def test_an_int8_output_one_step_off_fails_its_audit(int8_run, dataset: Dataset) -> None:
    units = int8_run.audit_units(1, claims=True)
    first = next(i for i, u in enumerate(units) if u.direction == FORWARD)
    assert units[first].claimed_output is not None
    wrong = bytearray(units[first].claimed_output)
    wrong[0] = (wrong[0] + 1) % 256  # one code of one value, one quantization step off
    units[first] = dataclasses.replace(
        units[first], claimed_output=bytes(wrong), output_digest=digest(bytes(wrong))
    )
    result = replay(INT8, 1, int8_run.starts[1], units, dataset)
    unit = result.units[first]
    assert not unit.match and unit.comparison is not None and unit.comparison.shape_ok
    assert all(r.match for i, r in enumerate(result.units) if i != first)
    verdict = judge(result, validator="v", miner="m", window=0, stage=1,
                    reported_checkpoint=int8_run.ends[1])  # fmt: skip
    assert verdict.outcome is Outcome.FAIL, verdict
