"""Stage assignment: coverage, caps, balance, determinism and the fewest possible moves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.orchestration import AssignmentConfig, assign_stages, count_moves

Assignment = dict[str, int | None]


def totals(result: Assignment, caps: dict[str, float], n: int) -> list[float]:
    return [sum(caps[p] for p, s in result.items() if s == stage) for stage in range(n)]


def least_moves(prev: Assignment, caps: dict[str, float], n: int) -> int:
    """The fewest moves any assignment needs to cover min(n, miners) stages."""
    kept = {prev[p] for p in caps if prev.get(p) is not None}
    free = sum(1 for p in caps if prev.get(p) is None)
    return max(0, min(n, len(caps)) - len(kept) - free)


def check_shape(result: Assignment, caps: dict[str, float], config: AssignmentConfig) -> None:
    n, cap = config.n_stages, config.max_miners_per_stage
    assert set(result) == set(caps)
    counts = [sum(1 for s in result.values() if s == stage) for stage in range(n)]
    assert sum(counts) + sum(1 for s in result.values() if s is None) == len(caps)
    assert sum(1 for c in counts if c) == min(n, len(caps))  # as many stages covered as can be
    if cap is not None:
        assert max(counts) <= cap
    if None in result.values():  # standbys only when every stage is full
        assert cap is not None and all(c == cap for c in counts)


def test_fresh_with_one_per_stage_takes_the_largest_and_keeps_the_rest_standby() -> None:
    caps = {"a": 1.0, "b": 5.0, "c": 3.0, "d": 3.0, "e": 2.0}
    result = assign_stages(caps, {}, AssignmentConfig(n_stages=3))
    assert {p for p, s in result.items() if s is not None} == {"b", "c", "d"}
    assert result["a"] is None and result["e"] is None
    assert result == {"b": 0, "c": 1, "d": 2, "a": None, "e": None}  # ties by peer id


def test_join_moves_nobody_and_departure_moves_one_donor() -> None:
    config = AssignmentConfig(n_stages=3, max_miners_per_stage=None)
    caps = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
    first = assign_stages(caps, {}, config)
    assert first == {"a": 0, "b": 1, "c": 2, "d": 2}
    joined = assign_stages(caps | {"e": 2.5}, first, config)
    assert count_moves(first, joined) == 0 and joined["e"] == 1
    without_a = {p: c for p, c in caps.items() if p != "a"}
    left = assign_stages(without_a, first, config)
    assert count_moves(first, left) == 1
    assert sorted(s for s in left.values() if s is not None) == [0, 1, 2]


def test_standby_is_promoted_without_moving_anyone() -> None:
    config = AssignmentConfig(n_stages=2)
    caps = {"a": 2.0, "b": 2.0, "s": 1.0}
    first = assign_stages(caps, {}, config)
    assert first["s"] is None
    after = assign_stages({"b": 2.0, "s": 1.0}, first, config)
    assert after == {"b": 1, "s": 0} and count_moves(first, after) == 0


def test_input_order_does_not_matter() -> None:
    config = AssignmentConfig(n_stages=3, max_miners_per_stage=2)
    caps = {f"m{i}": float(1 + i % 3) for i in range(7)}
    flipped = dict(reversed(list(caps.items())))
    assert assign_stages(caps, {}, config) == assign_stages(flipped, {}, config)


@pytest.mark.parametrize("kwargs", [{"n_stages": 0}, {"n_stages": 2, "max_miners_per_stage": 0}])
def test_config_is_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        AssignmentConfig(**kwargs)


capacities = st.integers(min_value=1, max_value=100).map(float)
ops = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=0, max_value=14), capacities),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=5),
    cap=st.sampled_from([1, 2, None]),
    steps=ops,
)
def test_membership_changes_keep_coverage_with_fewest_moves(
    n: int, cap: int | None, steps: list[tuple[bool, int, float]]
) -> None:
    config = AssignmentConfig(n_stages=n, max_miners_per_stage=cap)
    caps: dict[str, float] = {}
    current: Assignment = {}
    for join, index, capacity in steps:
        peer = f"m{index:02d}"
        if join:
            caps.setdefault(peer, capacity)
        else:
            caps.pop(peer, None)
        prev = {p: s for p, s in current.items() if p in caps}
        current = assign_stages(caps, prev, config)
        check_shape(current, caps, config)
        assert count_moves(prev, current) == least_moves(prev, caps, n)
        assert assign_stages(caps, prev, config) == current


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=1, max_value=6), joins=st.lists(capacities, min_size=1, max_size=30))
def test_joins_keep_stage_totals_within_one_miner(n: int, joins: list[float]) -> None:
    config = AssignmentConfig(n_stages=n, max_miners_per_stage=None)
    caps: dict[str, float] = {}
    current: Assignment = {}
    for i, capacity in enumerate(joins):
        caps[f"m{i:02d}"] = capacity
        current = assign_stages(caps, current, config)
        spread = totals(current, caps, n)
        if len(caps) >= n:
            assert max(spread) - min(spread) <= max(caps.values())
    fresh = totals(assign_stages(caps, {}, config), caps, n)
    if len(caps) >= n:
        assert max(fresh) - min(fresh) <= max(caps.values())
