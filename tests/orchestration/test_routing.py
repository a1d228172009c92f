"""Routes and leases: least-loaded picks, adaptive deadlines, expiry, re-routing, drops."""

from __future__ import annotations

from itertools import pairwise

import pytest

from node.orchestration import (
    BatchState,
    Direction,
    HopOutcome,
    LeaseConfig,
    MinerState,
    Orchestrator,
    Phase,
    RouteState,
    WindowError,
)
from store import Store
from tests.orchestration.kit import T0, FakeClock, make_config, run_route

FWD, BWD = Direction.FORWARD, Direction.BACKWARD


def test_issue_picks_least_loaded_miner_per_stage(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=2, per_stage=2), FakeClock())
    for peer, cap in [("b", 2.0), ("d", 2.0), ("a", 1.0), ("c", 1.0)]:
        orch.register_miner(peer, "hk", cap)
    assert {m.peer_id: m.stage for m in orch.miners()} == {"a": 0, "b": 0, "c": 1, "d": 1}
    r1 = orch.issue_route(0, 0, now=T0)
    r2 = orch.issue_route(0, 1, now=T0)
    r3 = orch.issue_route(0, 2, now=T0)
    assert r1 is not None and r2 is not None and r3 is not None
    assert (r1.miners, r2.miners, r3.miners) == (("b", "d"), ("a", "c"), ("b", "d"))
    run_route(orch, r2.route_id, 2, T0, 1.0)  # a and c are idle again, b and d hold one each
    r4 = orch.issue_route(0, 3, now=T0 + 10)
    assert r4 is not None and r4.miners == ("a", "c")
    assert r1.route_id == "0.0.1" and r1.attempt == 1 and r1.replaces is None


def test_equally_loaded_miners_follow_stage_zeros_rank(store: Store) -> None:
    """A stage whose miners are equally loaded takes the one of stage 0's pick's rank (by id),
    not simply the first id, so the chains stay a-b and c-d instead of mixing."""
    orch = Orchestrator(store, make_config(n_stages=2, per_stage=2), FakeClock())
    for peer in ("a", "b", "c", "d"):
        orch.register_miner(peer, "hk", 1.0)
    assert {m.peer_id: m.stage for m in orch.miners()} == {"a": 0, "b": 1, "c": 0, "d": 1}
    r1 = orch.issue_route(0, 0, now=T0)
    r2 = orch.issue_route(0, 1, now=T0)
    assert r1 is not None and r2 is not None
    assert (r1.miners, r2.miners) == (("a", "b"), ("c", "d"))
    run_route(orch, r2.route_id, 2, T0, 1.0)
    for stage, direction in [(0, FWD), (1, FWD), (1, BWD)]:  # a still owes its backward
        orch.complete_hop(r1.route_id, stage, direction, now=T0 + 1)
    r3 = orch.issue_route(0, 2, now=T0 + 10)
    assert r3 is not None and r3.miners == ("c", "d")  # b and d idle alike: d has c's rank


def test_step_groups_keep_their_miners_and_run_one_per_miner_side_by_side(store: Store) -> None:
    """Lockstep with groups of 2 batches (accumulate 2) and two miners per stage: each group
    stays on one miner per stage, and two groups (4 batches) are in flight at once."""
    config = make_config(n_stages=2, per_stage=2, batches=8, in_flight=2, lockstep=True,
                         group_size=2)  # fmt: skip
    orch = Orchestrator(store, config, FakeClock())
    for peer in ("a", "b", "c", "d"):
        orch.register_miner(peer, "hk", 1.0)
    first = orch.tick(now=T0)
    assert [r.batch for r in first] == [0, 1, 2, 3]  # 2 per group x 2 miners per stage
    by_batch = {r.batch: r.miners for r in first}
    assert by_batch[0] == by_batch[1] and by_batch[2] == by_batch[3]
    assert set(by_batch[0]).isdisjoint(by_batch[2])  # the two groups use different miners
    for r in first:
        run_route(orch, r.route_id, 2, T0, 1.0)
    second = orch.tick(now=T0 + 5)
    assert [r.batch for r in second] == [4, 5, 6, 7]
    assert {r.miners for r in second} == {by_batch[0], by_batch[2]}
    with pytest.raises(ValueError):
        make_config(group_size=0)


def test_issue_route_refuses_what_the_window_does_not_hold(store: Store) -> None:
    orch = Orchestrator(store, make_config(batches=2), FakeClock())
    orch.register_miner("a", "hk", 1.0)
    orch.register_miner("b", "hk", 1.0)
    assert orch.issue_route(0, 0) is not None
    for window, batch in [(0, 0), (0, 2), (0, -1), (1, 1)]:
        with pytest.raises(WindowError):
            orch.issue_route(window, batch)


def test_leases_arm_pause_and_complete_in_pipeline_order(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=2), FakeClock())
    orch.register_miner("a", "hk", 2.0)
    orch.register_miner("b", "hk", 1.0)
    route = orch.issue_route(0, 0, now=T0)
    assert route is not None
    budget = 2.0 * 10.0  # k x initial estimate
    [lease] = route.leases()
    assert (lease.stage, lease.miner, lease.direction, lease.deadline) == (0, "a", FWD, T0 + budget)
    assert orch.complete_hop(route.route_id, 0, FWD, now=T0 + 5) is HopOutcome.RECORDED
    [lease] = orch.leases()  # a waits (paused), b owes its forward
    assert (lease.stage, lease.deadline) == (1, T0 + 5 + budget)
    orch.complete_hop(route.route_id, 1, FWD, now=T0 + 8)
    [lease] = orch.leases()  # the last stage owes its backward at once, with what is left
    assert (lease.stage, lease.direction, lease.deadline) == (1, BWD, T0 + 8 + budget - 3)
    orch.complete_hop(route.route_id, 1, BWD, now=T0 + 14)
    [lease] = orch.leases()
    assert (lease.stage, lease.direction, lease.deadline) == (0, BWD, T0 + 14 + budget - 5)
    assert orch.complete_hop(route.route_id, 1, "backward", now=T0 + 15) is HopOutcome.DUPLICATE
    assert orch.complete_hop(route.route_id, 0, BWD, now=T0 + 16) is HopOutcome.ROUTE_DONE
    assert orch.complete_hop(route.route_id, 0, BWD, now=T0 + 17) is HopOutcome.NOT_OPEN
    assert orch.complete_hop("9.9.9", 0, BWD, now=T0 + 17) is HopOutcome.UNKNOWN
    assert orch.leases() == [] and orch.run_state().completed == 1
    done = orch.route(route.route_id)
    assert done is not None and done.state is RouteState.DONE and done.finished_at == T0 + 16


def test_out_of_order_reports_imply_earlier_hops(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=3), FakeClock())
    for peer in "abc":
        orch.register_miner(peer, "hk", 1.0)
    route = orch.issue_route(0, 0, now=T0)
    assert route is not None
    assert orch.complete_hop(route.route_id, 2, FWD, now=T0 + 3) is HopOutcome.RECORDED
    assert orch.complete_hop(route.route_id, 0, FWD, now=T0 + 4) is HopOutcome.DUPLICATE
    assert orch.complete_hop(route.route_id, 0, BWD, now=T0 + 6) is HopOutcome.ROUTE_DONE
    # Inferred times are not evidence of latency: the estimates stay where they were.
    with store.read() as txn:
        assert orch.latency.estimates(txn) == [10.0, 10.0, 10.0]


def test_deadlines_follow_observed_latency_within_clamps(store: Store) -> None:
    config = make_config(n_stages=2, batches=40)
    orch = Orchestrator(store, config, FakeClock())
    orch.register_miner("a", "hk", 1.0)
    orch.register_miner("b", "hk", 1.0)
    t, budgets = T0, []
    for batch in range(12):  # fast hops: 0.1 s each way, 0.2 s per hop
        route = orch.issue_route(0, batch, now=t)
        assert route is not None
        budgets.append(route.leases()[0].deadline - t)
        t = run_route(orch, route.route_id, 2, t, 0.1)
    assert budgets[0] == 20.0
    assert all(later < earlier for earlier, later in pairwise(budgets[:6]))
    assert budgets[-1] == pytest.approx(1.0)  # clamped at min_s
    for batch in range(12, 24):  # slow hops: 60 s per hop
        route = orch.issue_route(0, batch, now=t)
        assert route is not None
        budgets.append(route.leases()[0].deadline - t)
        t = run_route(orch, route.route_id, 2, t, 30.0)
    assert budgets[13] > budgets[12] and budgets[-1] == pytest.approx(100.0)  # max_s


def test_expiry_marks_suspect_and_reissues_to_another_miner(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=2, batches=1), FakeClock())
    orch.register_miner("a", "hk", 2.0)
    orch.register_miner("b", "hk", 2.0)
    orch.register_miner("s", "hk", 1.0)
    first = orch.issue_route(0, 0, now=T0)
    assert first is not None and first.miners == ("a", "b")
    assert orch.expire(now=T0 + 20) == []  # deadline reached but not passed
    [second] = orch.expire(now=T0 + 20.5)
    assert second.miners == ("s", "b")
    assert (second.batch, second.attempt, second.replaces) == (0, 2, first.route_id)
    old = orch.route(first.route_id)
    assert old is not None and old.state is RouteState.EXPIRED
    a = next(m for m in orch.miners() if m.peer_id == "a")
    assert (a.state, a.misses, a.stage) == (MinerState.SUSPECT, 1, None)
    assert [r.route_id for r in orch.open_routes()] == ["0.0.2"]


def test_repeated_misses_make_a_miner_gone_and_waiting_batch_resumes(store: Store) -> None:
    orch = Orchestrator(
        store, make_config(n_stages=1, batches=1, max_misses=2, max_attempts=5), FakeClock()
    )
    orch.register_miner("x", "hk", 1.0, now=T0)
    assert orch.issue_route(0, 0, now=T0) is not None
    assert orch.expire(now=T0 + 21) == []  # x was the only miner: the batch waits
    batch = orch.batch(0, 0)
    assert batch is not None and batch.state is BatchState.WAITING
    assert orch.tick(now=T0 + 22) == [] and orch.status()["batches"]["waiting"] == 1
    orch.heartbeat("x", now=T0 + 23)
    [again] = orch.tick(now=T0 + 23)
    assert (again.miners, again.attempt) == (("x",), 2)
    assert orch.expire(now=T0 + 44) == []
    x = orch.miners()[0]
    assert (x.state, x.misses) == (MinerState.GONE, 2)
    orch.register_miner("y", "hk", 1.0, now=T0 + 50)
    [third] = orch.tick(now=T0 + 50)
    assert (third.miners, third.attempt, third.replaces) == (("y",), 3, "0.0.2")
    run_route(orch, third.route_id, 1, T0 + 50, 1.0)
    assert orch.run_state().phase is Phase.MERGE


def test_completed_hop_clears_misses(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=1, batches=1), FakeClock())
    orch.register_miner("x", "hk", 1.0, now=T0)
    orch.issue_route(0, 0, now=T0)
    orch.expire(now=T0 + 21)
    orch.heartbeat("x", now=T0 + 22)
    [route] = orch.tick(now=T0 + 22)
    assert orch.miners()[0].misses == 1
    orch.complete_hop(route.route_id, 0, FWD, now=T0 + 23)
    assert orch.miners()[0].misses == 0


def test_batch_is_dropped_after_max_attempts(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=1, batches=1, max_attempts=2), FakeClock())
    orch.register_miner("x", "hk", 2.0)
    orch.register_miner("y", "hk", 1.0)
    orch.issue_route(0, 0, now=T0)
    [second] = orch.expire(now=T0 + 21)
    assert second.miners == ("y",)
    assert orch.expire(now=T0 + 42) == []
    batch = orch.batch(0, 0)
    assert batch is not None and (batch.state, batch.reason) == (BatchState.DROPPED, "max_attempts")
    assert batch.routes == ["0.0.1", "0.0.2"]
    state = orch.run_state()
    assert (state.dropped, state.completed, state.phase) == (1, 0, Phase.MERGE)


def test_gone_miner_route_is_rerouted_without_a_miss(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=2, batches=1), FakeClock())
    for peer, cap in [("a", 3.0), ("b", 3.0), ("s", 1.0)]:
        orch.register_miner(peer, "hk", cap)
    first = orch.issue_route(0, 0, now=T0)
    assert first is not None and first.miners == ("a", "b")
    orch.mark_gone("b")
    [second] = orch.expire(now=T0 + 1)
    assert second.miners == ("a", "s")
    b = next(m for m in orch.miners() if m.peer_id == "b")
    assert (b.state, b.misses) == (MinerState.GONE, 0)


def test_a_refused_route_waits_again_at_once_without_a_miss(store: Store) -> None:
    """A route its first miner refused (over capacity, not assigned) is closed and its batch
    routed again at the next tick, not left open until its lease runs out."""
    orch = Orchestrator(store, make_config(n_stages=1, batches=2), FakeClock())
    orch.register_miner("a", "hk", 1.0)
    orch.register_miner("b", "hk", 1.0)
    first = orch.issue_route(0, 0, now=T0)
    refused = orch.issue_route(0, 1, now=T0)
    assert first is not None and refused is not None
    assert orch.abandon(refused.route_id, now=T0 + 0.1)
    assert not orch.abandon(refused.route_id, now=T0 + 0.1)  # closed already
    old = orch.route(refused.route_id)
    assert old is not None and old.state is RouteState.EXPIRED
    batch = orch.batch(0, 1)
    assert batch is not None and batch.state is BatchState.WAITING
    assert all(m.misses == 0 and m.state is MinerState.ACTIVE for m in orch.miners())
    [again] = orch.tick(now=T0 + 0.2)  # long before any lease deadline
    assert (again.batch, again.attempt, again.replaces) == (1, 2, refused.route_id)
    orch.complete_hop(first.route_id, 0, FWD, now=T0 + 0.3)
    assert not orch.abandon(first.route_id, now=T0 + 0.3)  # started: its lease decides


def test_lease_config_is_validated() -> None:
    with pytest.raises(ValueError):
        LeaseConfig(min_s=5.0, max_s=1.0)
    with pytest.raises(ValueError):
        LeaseConfig(ewma_alpha=0.0)


def test_status_shows_each_miners_leases_and_the_slowest_stage(store: Store) -> None:
    clock = FakeClock()
    orch = Orchestrator(store, make_config(n_stages=2, batches=8), clock)
    orch.register_miner("a", "hk", 1.0)
    orch.register_miner("b", "hk", 1.0)
    t = T0
    for batch in range(4):  # stage 1's hops take 4x as long as stage 0's
        route = orch.issue_route(0, batch, now=t)
        assert route is not None
        for stage, direction, seconds in [
            (0, FWD, 0.5),
            (1, FWD, 2.0),
            (1, BWD, 2.0),
            (0, BWD, 0.5),
        ]:
            t += seconds
            orch.complete_hop(route.route_id, stage, direction, now=t)
    assert orch.issue_route(0, 4, now=t) is not None
    clock.t = t + 7
    status = orch.status()
    rows = {m["peer_id"]: m for s in status["stages"] for m in s["miners"]}
    assert rows["a"]["leases"] == 1 and rows["b"]["leases"] == 0  # stage 0 holds the new hop
    assert rows["a"]["misses"] == 0 and rows["a"]["seen_s_ago"] >= 7
    hop = [s["hop_s"] for s in status["stages"]]
    assert hop[1] > hop[0] > 0
    assert status["bottleneck"] == 1
