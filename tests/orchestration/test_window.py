"""The window clock: train, merge, next window; and resuming a run from its LMDB store."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.orchestration import Direction, Orchestrator, Phase, WindowError
from store import Store, StoreConfig
from tests.orchestration.kit import T0, FakeClock, make_config, run_route


def test_window_trains_merges_and_advances(store: Store) -> None:
    clock = FakeClock()
    orch = Orchestrator(store, make_config(n_stages=2, batches=3, in_flight=2), clock)
    orch.register_miner("a", "hk", 1.0)
    orch.register_miner("b", "hk", 1.0)
    routes = orch.tick(now=T0)
    assert [r.route_id for r in routes] == ["0.0.1", "0.1.1"]  # in-flight limit
    assert orch.tick(now=T0 + 1) == []
    with pytest.raises(WindowError):
        orch.finish_merge(now=T0 + 1)
    t = run_route(orch, routes[0].route_id, 2, T0 + 1, 1.0)
    [third] = orch.tick(now=t)
    assert third.route_id == "0.2.1"
    t = run_route(orch, routes[1].route_id, 2, t, 1.0)
    assert orch.run_state().phase is Phase.TRAIN
    t = run_route(orch, third.route_id, 2, t, 1.0)
    state = orch.run_state()
    assert (state.phase, state.completed, state.issued, state.merge_started_at) == (
        Phase.MERGE,
        3,
        3,
        t,
    )
    assert orch.tick(now=t + 1) == []
    with pytest.raises(WindowError):
        orch.issue_route(0, 0, now=t + 1)
    nxt = orch.finish_merge(now=t + 5)
    assert (nxt.window, nxt.phase, nxt.completed, nxt.window_started_at) == (
        1,
        Phase.TRAIN,
        0,
        t + 5,
    )
    assert [r.route_id for r in orch.tick(now=t + 6)] == ["1.0.1", "1.1.1"]


def test_lockstep_starts_each_group_after_the_previous_one_and_fill_can_be_held(
    store: Store,
) -> None:
    config = make_config(n_stages=2, batches=4, in_flight=2, lockstep=True)
    orch = Orchestrator(store, config, FakeClock())
    orch.register_miner("a", "hk", 1.0)
    orch.register_miner("b", "hk", 1.0)
    assert orch.tick(now=T0, fill=False) == []
    first = orch.tick(now=T0)
    assert [r.route_id for r in first] == ["0.0.1", "0.1.1"]
    t = run_route(orch, first[0].route_id, 2, T0, 1.0)
    assert orch.tick(now=t) == []  # one of the group is still open
    t = run_route(orch, first[1].route_id, 2, t, 1.0)
    assert [r.route_id for r in orch.tick(now=t)] == ["0.2.1", "0.3.1"]


def test_reopened_store_resumes_the_same_run_mid_window(store_path: Path) -> None:
    clock = FakeClock()
    config = make_config(n_stages=2, batches=3, in_flight=2)
    with Store.open(store_path, StoreConfig(sync=False)) as store:
        orch = Orchestrator(store, config, clock)
        orch.register_miner("a", "hk", 1.0)
        orch.register_miner("b", "hk", 1.0)
        first, second = orch.tick(now=T0)
        orch.complete_hop(first.route_id, 0, Direction.FORWARD, now=T0 + 2)
        before = (orch.status(), orch.open_routes(), orch.run_state(), orch.miners())
    with Store.open(store_path, StoreConfig(sync=False)) as store:
        orch = Orchestrator(store, config, clock)
        assert (orch.status(), orch.open_routes(), orch.run_state(), orch.miners()) == before
        assert before[0]["batches"]["open"] == 2 and before[0]["open_leases"] == 2
        orch.complete_hop(first.route_id, 1, Direction.FORWARD, now=T0 + 3)
        orch.complete_hop(first.route_id, 0, Direction.BACKWARD, now=T0 + 4)
        [third] = orch.tick(now=T0 + 4)
        assert third.route_id == "0.2.1"
        run_route(orch, second.route_id, 2, T0 + 4, 1.0)
        run_route(orch, third.route_id, 2, T0 + 4, 1.0)
        assert orch.run_state().phase is Phase.MERGE


def test_reopen_with_another_stage_count_is_refused(store: Store) -> None:
    Orchestrator(store, make_config(n_stages=2), FakeClock())
    with pytest.raises(WindowError):
        Orchestrator(store, make_config(n_stages=3), FakeClock())


def test_partial_run_record_from_older_code_is_completed(store: Store) -> None:
    with store.write() as txn:
        txn.put("runs", "run-a", {"run_id": "run-a", "window": 3})
    orch = Orchestrator(store, make_config(batches=5), FakeClock())
    state = orch.run_state()
    assert (state.window, state.phase, state.batches_total, state.window_started_at) == (
        3,
        Phase.TRAIN,
        5,
        T0,
    )
