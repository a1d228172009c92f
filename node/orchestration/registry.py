"""The registry of miners of one run: identity, declared capacity, liveness and stage.

A miner is `active` (routable), `suspect` (missed a lease or went quiet; not routed until it
heartbeats again) or `gone` (left, silent too long, or too many consecutive missed leases; must
register again). Every change of who is active re-runs the stage assignment, so the stored
stages always match the current membership.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from node.orchestration.assignment import AssignmentConfig, assign_stages
from node.orchestration.keys import RUNS, Keys, check_id
from store import ReadTxn, WriteTxn


class MinerState(StrEnum):
    ACTIVE = "active"
    SUSPECT = "suspect"
    GONE = "gone"


@dataclass(kw_only=True, slots=True)
class RegistryConfig:
    """Liveness rules for registered miners."""

    suspect_after_s: float = 30.0
    """An active miner not heard from for this long becomes suspect."""
    gone_after_s: float = 120.0
    """A miner not heard from for this long is gone."""
    max_misses: int = 3
    """Consecutive expired leases after which a miner is gone; a completed hop resets the count."""
    heartbeat_write_s: float = 1.0
    """An active miner's heartbeat is written only once its stored `last_seen` is this old:
    liveness is judged in tens of seconds, and a write per tick was a synced commit per miner
    ten times a second on the orchestrator's event loop."""

    def __post_init__(self) -> None:
        if not 0 < self.suspect_after_s <= self.gone_after_s:
            raise ValueError("need 0 < suspect_after_s <= gone_after_s")
        if not 0 <= self.heartbeat_write_s < self.suspect_after_s:
            raise ValueError("need 0 <= heartbeat_write_s < suspect_after_s")
        if self.max_misses < 1:
            raise ValueError(f"max_misses must be >= 1, got {self.max_misses}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Miner:
    peer_id: str
    hotkey: str
    capacity: float
    stage: int | None
    state: MinerState
    last_seen: float
    misses: int = 0
    registered_at: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "hotkey": self.hotkey,
            "capacity": self.capacity,
            "stage": self.stage,
            "state": self.state.value,
            "last_seen": self.last_seen,
            "misses": self.misses,
            "registered_at": self.registered_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Miner:
        stage = record.get("stage")
        return cls(
            peer_id=str(record["peer_id"]),
            hotkey=str(record["hotkey"]),
            capacity=float(record["capacity"]),
            stage=None if stage is None else int(stage),
            state=MinerState(record["state"]),
            last_seen=float(record["last_seen"]),
            misses=int(record.get("misses", 0)),
            registered_at=float(record.get("registered_at", 0.0)),
        )


class Registry:
    """Miner records in the `runs` table; every method works inside the caller's transaction."""

    def __init__(self, keys: Keys, config: RegistryConfig, assignment: AssignmentConfig) -> None:
        self._keys = keys
        self.config = config
        self.assignment = assignment

    def get(self, txn: ReadTxn, peer_id: str) -> Miner | None:
        record = txn.get(RUNS, self._keys.miner(peer_id))
        return None if record is None else Miner.from_record(record)

    def miners(self, txn: ReadTxn) -> list[Miner]:
        """All miners ever registered in this run, by peer id."""
        return [Miner.from_record(r) for _, r in txn.scan(RUNS, self._keys.miners())]

    def routable(self, txn: ReadTxn, stage: int) -> list[Miner]:
        """Active miners assigned to `stage`."""
        return [m for m in self.miners(txn) if m.state is MinerState.ACTIVE and m.stage == stage]

    def register(
        self, txn: WriteTxn, peer_id: str, hotkey: str, capacity: float, now: float
    ) -> Miner:
        """Adds a miner, or re-admits a known one (active again, misses cleared)."""
        check_id("peer id", peer_id)
        if not math.isfinite(capacity) or capacity <= 0:
            raise ValueError(f"capacity must be a positive finite number, got {capacity!r}")
        old = self.get(txn, peer_id)
        miner = Miner(
            peer_id=peer_id,
            hotkey=hotkey,
            capacity=float(capacity),
            stage=None if old is None else old.stage,
            state=MinerState.ACTIVE,
            last_seen=now,
            registered_at=now if old is None else old.registered_at,
        )
        self._put(txn, miner)
        self.rebalance(txn)
        return self.get(txn, peer_id) or miner

    def heartbeat(self, txn: WriteTxn, peer_id: str, now: float) -> Miner | None:
        """Refreshes liveness (a suspect miner becomes active); None if unknown or gone."""
        miner = self.get(txn, peer_id)
        if miner is None or miner.state is MinerState.GONE:
            return None
        revived = miner.state is MinerState.SUSPECT
        if not revived and now - miner.last_seen < self.config.heartbeat_write_s:
            return miner  # fresh enough: nothing to write
        self._put(txn, replace(miner, state=MinerState.ACTIVE, last_seen=max(now, miner.last_seen)))
        if revived:
            self.rebalance(txn)
        return self.get(txn, peer_id)

    def mark_gone(self, txn: WriteTxn, peer_id: str) -> bool:
        """Marks a miner gone (left the network); False if unknown or already gone."""
        miner = self.get(txn, peer_id)
        if miner is None or miner.state is MinerState.GONE:
            return False
        self._put(txn, replace(miner, state=MinerState.GONE))
        self.rebalance(txn)
        return True

    def record_miss(self, txn: WriteTxn, peer_id: str) -> Miner | None:
        """Counts an expired lease: the miner becomes suspect, or gone after `max_misses`."""
        miner = self.get(txn, peer_id)
        if miner is None or miner.state is MinerState.GONE:
            return miner
        misses = miner.misses + 1
        state = MinerState.GONE if misses >= self.config.max_misses else MinerState.SUSPECT
        self._put(txn, replace(miner, misses=misses, state=state))
        self.rebalance(txn)
        return self.get(txn, peer_id)

    def record_success(self, txn: WriteTxn, peer_id: str) -> None:
        """A hop finished by this miner: its consecutive-miss count starts again."""
        miner = self.get(txn, peer_id)
        if miner is not None and miner.misses:
            self._put(txn, replace(miner, misses=0))

    def sweep(self, txn: WriteTxn, now: float) -> list[Miner]:
        """Applies the silence timeouts; returns the miners whose state changed."""
        changed: list[Miner] = []
        for miner in self.miners(txn):
            silent = now - miner.last_seen
            state = miner.state
            if state is not MinerState.GONE and silent > self.config.gone_after_s:
                state = MinerState.GONE
            elif state is MinerState.ACTIVE and silent > self.config.suspect_after_s:
                state = MinerState.SUSPECT
            if state is not miner.state:
                changed.append(replace(miner, state=state))
                self._put(txn, changed[-1])
        if changed:
            self.rebalance(txn)
        return changed

    def rebalance(self, txn: WriteTxn) -> dict[str, int | None]:
        """Re-runs the stage assignment over active miners; returns the new stage of each."""
        miners = self.miners(txn)
        active = {m.peer_id: m.capacity for m in miners if m.state is MinerState.ACTIVE}
        previous = {m.peer_id: m.stage for m in miners}
        stages = assign_stages(active, previous, self.assignment)
        for miner in miners:
            stage = stages.get(miner.peer_id)
            if stage != miner.stage:
                self._put(txn, replace(miner, stage=stage))
        return stages

    def _put(self, txn: WriteTxn, miner: Miner) -> None:
        txn.put(RUNS, self._keys.miner(miner.peer_id), miner.to_record())
