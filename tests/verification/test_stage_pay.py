"""The pay rule's parts (stage weights, capacity, quality) and docs/pay.md's worked example."""

import json
import math
import re
from pathlib import Path

import pytest

from tests.verification.kit import SPEC
from verification.stage_pay import (
    capacity_factors,
    compute_shares,
    miner_weights,
    quality_gates,
    quality_multipliers,
    stage_weights,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "pay.md"


def test_compute_shares_follow_the_split() -> None:
    shares = compute_shares(SPEC)  # tiny: 4 layers over 3 stages (2, 1, 1), head on stage 2
    assert set(shares) == {0, 1, 2} and math.fsum(shares.values()) == pytest.approx(1.0)
    assert shares[0] > shares[1] and shares[2] > shares[1]  # two layers; one layer and the head


def test_stage_weights_sum_to_one_and_rise_for_an_under_served_stage() -> None:
    compute = {0: 0.5, 1: 0.25, 2: 0.25}
    spread = stage_weights(compute, {0: 4, 1: 2, 2: 2})  # staffed in proportion to compute
    assert spread == pytest.approx(compute)
    short = stage_weights(compute, {0: 4, 1: 1, 2: 2})
    assert math.fsum(short.values()) == pytest.approx(1.0)
    assert short[1] > spread[1] and short[0] < spread[0]
    assert short[1] / 1 > spread[1] / 2  # each miner of the short stage is paid more
    assert stage_weights(compute, {0: 2, 1: 0, 2: 2}).keys() == {0, 2}
    assert stage_weights(compute, {}) == {}


def test_over_declared_capacity_is_paid_less() -> None:
    stage_of = {"a": 0, "b": 0, "c": 0}
    declared = {"a": 100.0, "b": 100.0, "c": 200.0}  # c declares twice what it delivers
    observed = {"a": 100.0, "b": 90.0, "c": 100.0}
    factors = capacity_factors(declared, observed, stage_of)
    assert factors["a"] == factors["b"] == 1.0  # b is within the tolerance
    assert factors["c"] == pytest.approx(0.5 / 0.9 / 0.8)
    honest = capacity_factors({**declared, "c": 100.0}, observed, stage_of)
    assert honest["c"] == 1.0
    assert capacity_factors(declared, {}, stage_of) == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_quality_multipliers_average_one_per_stage() -> None:
    q = quality_multipliers(
        {"a": 0.3, "b": 0.1, "c": 0.0, "d": 0.0}, {"a": 0, "b": 0, "c": 1, "d": 1}
    )
    assert q["a"] + q["b"] == pytest.approx(2.0) and q["a"] == pytest.approx(1.8)
    assert q["c"] == q["d"] == 1.0  # nobody above 0 yet: paid on validated work alone
    w = miner_weights(
        run_share=1.0, stages={0: 0.5, 1: 0.5}, stage_of={"a": 0, "b": 0, "c": 1, "d": 1},
        validated={"a": 1, "b": 1, "c": 1, "d": 1}, quality=q,
    )  # fmt: skip
    assert w == pytest.approx({"a": 0.45, "b": 0.05, "c": 0.25, "d": 0.25})


def test_the_worked_example_of_docs_pay_md() -> None:
    block = re.search(r"```json pay-example\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None
    ex = json.loads(block.group(1))
    compute = {int(s): c for s, c in ex["compute"].items()}
    staffing: dict[int, int] = {}
    for s in ex["stage_of"].values():
        staffing[s] = staffing.get(s, 0) + 1
    stages = stage_weights(compute, staffing)
    quality = quality_multipliers(ex["final"], ex["stage_of"])
    capacity = capacity_factors(ex["declared"], ex["observed"], ex["stage_of"])
    weights = miner_weights(
        run_share=ex["run_share"], stages=stages, stage_of=ex["stage_of"],
        validated=ex["validated"], quality=quality, capacity=capacity,
    )  # fmt: skip
    expect = ex["expect"]
    assert {str(s): w for s, w in stages.items()} == pytest.approx(
        expect["stage_weights"], abs=1e-6
    )
    assert quality == pytest.approx(expect["quality"], abs=1e-6)
    assert capacity == pytest.approx(expect["capacity"], abs=1e-6)
    assert weights == pytest.approx(expect["weights"], abs=1e-6)
    assert math.fsum(weights.values()) == pytest.approx(ex["run_share"])
    gates = quality_gates(ex["binary"], {}, ex["stage_of"])  # the default: all pass
    assert gates == {"A": 1.0, "B": 1.0, "C": 1.0}
    gated = miner_weights(
        run_share=ex["run_share"], stages=stages, stage_of=ex["stage_of"],
        validated=ex["validated"], quality=gates, capacity=capacity,
    )  # fmt: skip
    assert gated["A"] == pytest.approx(expect["gate_weight_A"], abs=1e-6)


def test_the_quality_gate_stops_useless_contributions_only() -> None:
    stage_of = {"a": 0, "b": 0, "lazy": 0, "c": 1, "d": 1}
    binary = {"a": 0.3, "b": 0.0001, "lazy": -0.4, "c": -0.1, "d": -0.2}
    gates = quality_gates(binary, {"b": 0.5}, stage_of)
    assert gates == {"a": 1.0, "b": 0.5, "lazy": 0.0, "c": 1.0, "d": 1.0}  # stage 1: no signal
    assert quality_gates({}, {}, {"new": 0}) == {"new": 1.0}  # not screened yet: passes
