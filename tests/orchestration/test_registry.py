"""Miner registry: registration, heartbeats, silence timeouts, departures, persistence."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from node.orchestration import MinerState, Orchestrator, RegistryConfig
from store import Store, StoreConfig
from tests.orchestration.kit import T0, FakeClock, make_config


def stages(orch: Orchestrator) -> dict[str, int | None]:
    return {m.peer_id: m.stage for m in orch.miners()}


def test_register_assigns_stages_and_persists(store_path: Path) -> None:
    clock = FakeClock()
    with Store.open(store_path, StoreConfig(sync=False)) as store:
        orch = Orchestrator(store, make_config(n_stages=2), clock)
        a = orch.register_miner("a", "hk-a", 2.0)
        assert (a.stage, a.state, a.hotkey, a.last_seen) == (0, MinerState.ACTIVE, "hk-a", T0)
        orch.register_miner("b", "hk-b", 1.0)
        orch.register_miner("c", "hk-c", 0.5)
    with Store.open(store_path, StoreConfig(sync=False)) as store:
        orch = Orchestrator(store, make_config(n_stages=2), clock)
        assert stages(orch) == {"a": 0, "b": 1, "c": None}


@pytest.mark.parametrize(
    ("peer", "capacity"), [("x", 0.0), ("x", -1.0), ("x", float("nan")), ("a/b", 1.0), ("", 1.0)]
)
def test_register_rejects_bad_input(store: Store, peer: str, capacity: float) -> None:
    orch = Orchestrator(store, make_config(), FakeClock())
    with pytest.raises(ValueError):
        orch.register_miner(peer, "hk", capacity)
    assert orch.miners() == []


def test_silence_makes_suspect_then_gone_and_heartbeat_revives(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=1), FakeClock())
    orch.register_miner("a", "hk", 1.0, now=T0)
    orch.tick(now=T0 + 31)
    (a,) = orch.miners()
    assert (a.state, a.stage) == (MinerState.SUSPECT, None)
    a2 = orch.heartbeat("a", now=T0 + 32)
    assert a2 is not None and (a2.state, a2.stage) == (MinerState.ACTIVE, 0)
    orch.tick(now=T0 + 32 + 121)
    assert orch.miners()[0].state is MinerState.GONE
    assert orch.heartbeat("a", now=T0 + 200) is None
    assert orch.heartbeat("nobody", now=T0 + 200) is None
    back = orch.register_miner("a", "hk", 1.0, now=T0 + 201)
    assert (back.state, back.stage, back.registered_at) == (MinerState.ACTIVE, 0, T0)


def test_departure_promotes_standby_and_revived_suspect_becomes_standby(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=2), FakeClock())
    orch.register_miner("a", "hk", 3.0)
    orch.register_miner("b", "hk", 2.0)
    orch.register_miner("s", "hk", 1.0)
    assert stages(orch) == {"a": 0, "b": 1, "s": None}
    assert orch.mark_gone("a") and not orch.mark_gone("a") and not orch.mark_gone("zz")
    assert stages(orch) == {"a": None, "b": 1, "s": 0}
    orch.register_miner("a", "hk", 3.0)  # back, but stage 0 is held: no one is moved for it
    assert stages(orch) == {"a": None, "b": 1, "s": 0}
    (standby,) = orch.status()["standby"]
    assert standby | {"seen_s_ago": 0} == {
        "peer_id": "a",
        "capacity": 3.0,
        "state": "active",
        "leases": 0,
        "misses": 0,
        "seen_s_ago": 0,
    }


def test_heartbeats_are_written_once_per_interval_and_keep_the_miner_active(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=1), FakeClock())
    orch.register_miner("a", "hk", 1.0, now=T0)
    every = RegistryConfig().heartbeat_write_s
    seen = []
    for i in range(1, 401):  # one every 0.1 s for 40 s, the orchestrator ticking between
        now = T0 + i / 10
        orch.heartbeat("a", now=now)
        orch.tick(now=now, fill=False)  # liveness sweep only: no leases to miss
        seen.append(orch.miners()[0].last_seen)
    assert orch.miners()[0].state is MinerState.ACTIVE  # never suspect after 30 s
    writes = sorted(set(seen))
    assert len(writes) == pytest.approx(40 / every, abs=2)  # not 400
    assert all(b - a >= every - 1e-9 for a, b in itertools.pairwise(writes))
    assert T0 + 40 - seen[-1] < every
