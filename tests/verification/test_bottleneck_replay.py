"""A run with activation compression (a learned bottleneck at each stage boundary): what crosses
a boundary is `dim // compress` wide both ways, and audits replay every stage bitwise."""

import dataclasses

import pytest

from tests.verification.kit import SPEC, run_window
from training.data.dataset import Dataset
from training.determinism import set_determinism
from verification.replay import BACKWARD, FORWARD, replay
from verification.verdict import Outcome, Reason, judge

COMPRESSED = dataclasses.replace(SPEC, compress=4)


@pytest.fixture(scope="module")
def compressed(dataset: Dataset):
    set_determinism(0, threads=1)
    first = run_window(COMPRESSED, dataset, 0, [None] * COMPRESSED.n_stages)
    second = run_window(COMPRESSED, dataset, 1, list(first.ends), holdings=first.holdings)
    return [first, second]


def test_only_the_bottleneck_crosses_a_boundary(compressed) -> None:
    config = COMPRESSED.model_config()
    assert (config.dim, config.bottleneck, config.wire_dim) == (64, 16, 16)
    wire = COMPRESSED.batch_size * COMPRESSED.seq_len * config.wire_dim * 4
    crossings = 0
    for stage in range(COMPRESSED.n_stages):
        for recorded in compressed[0].units[stage]:
            unit = recorded.unit
            if unit.direction == FORWARD and stage < COMPRESSED.n_stages - 1:
                assert len(unit.outputs) == wire  # activation to stage + 1
                crossings += 1
            if unit.direction == BACKWARD and stage > 0:
                assert len(unit.outputs) == wire  # gradient to stage - 1
                crossings += 1
    assert crossings == 4 * COMPRESSED.batches_per_window


@pytest.mark.parametrize("window", [0, 1])
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_compressed_stages_replay_bitwise(
    compressed, dataset: Dataset, window: int, stage: int
) -> None:
    run = compressed[window]
    units = run.audit_units(stage)
    result = replay(COMPRESSED, stage, run.starts[stage], units, dataset)
    assert result.complete and all(r.match and r.input_ok and r.weights_ok for r in result.units)
    verdict = judge(result, validator="v", miner="m", window=window, stage=stage,
                    reported_checkpoint=run.ends[stage])  # fmt: skip
    assert (verdict.outcome, verdict.reason) == (Outcome.PASS, Reason.OK)
