"""The orchestrator core's facade: registry, routing, window clock and ledger over one store.

Every call is one LMDB write (or read) transaction, so a crash between calls leaves the run
consistent and a new `Orchestrator` over the same store resumes it where it stopped. `now`
defaults to the injected clock, which must be a wall clock: deadlines outlive restarts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.orchestration.assignment import AssignmentConfig
from node.orchestration.keys import Keys
from node.orchestration.leases import LatencyModel, LeaseConfig
from node.orchestration.ledger import (
    Dispute,
    LedgerConfig,
    ReceiptLedger,
    ReceiptRecord,
    Refusal,
)
from node.orchestration.pruning import RecordPruner
from node.orchestration.registry import Miner, MinerState, Registry, RegistryConfig
from node.orchestration.routes import BatchRecord, Direction, HopOutcome, Lease, Route, RouteState
from node.orchestration.routing import Router, RoutingConfig
from node.orchestration.window import Phase, RunState, WindowClock, WindowConfig
from p2p.messages import Receipt
from store import ReadTxn, Store, WriteTxn

Clock = Callable[[], float]


@dataclass(kw_only=True, slots=True)
class OrchestrationConfig:
    """Everything the orchestrator core needs to know about its run."""

    run_id: str
    assignment: AssignmentConfig
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    leases: LeaseConfig = field(default_factory=LeaseConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)


class Orchestrator:
    """The run's orchestration state machine; drive it with `tick` and the event methods."""

    def __init__(self, store: Store, config: OrchestrationConfig, clock: Clock = time.time):
        self._store = store
        self.config = config
        self._clock_fn = clock
        keys = Keys(config.run_id)
        n = config.assignment.n_stages
        self.registry = Registry(keys, config.registry, config.assignment)
        self.clock = WindowClock(keys, config.window, n)
        self.latency = LatencyModel(keys, config.leases, n)
        self.router = Router(keys, config.routing, self.registry, self.clock, self.latency)
        self._pruner = RecordPruner(store, keys)
        self.router.group_size = config.window.group_size
        self.ledger = ReceiptLedger(keys, config.ledger, self.registry, self.router, self.clock)
        with store.write() as txn:
            self.clock.ensure(txn, clock())

    # membership ------------------------------------------------------------------------------

    def register_miner(
        self, peer_id: str, hotkey: str, capacity: float, now: float | None = None
    ) -> Miner:
        """Admits (or re-admits) a miner whose hello and hotkey binding were verified."""
        with self._store.write() as txn:
            return self.registry.register(txn, peer_id, hotkey, capacity, self._now(now))

    def heartbeat(self, peer_id: str, now: float | None = None) -> Miner | None:
        """A sign of life; None means the peer must register (again)."""
        with self._store.write() as txn:
            return self.registry.heartbeat(txn, peer_id, self._now(now))

    def mark_gone(self, peer_id: str) -> bool:
        """The peer left; its unfinished hops are re-routed by the next `tick`/`expire`."""
        with self._store.write() as txn:
            return self.registry.mark_gone(txn, peer_id)

    # work ------------------------------------------------------------------------------------

    def tick(
        self, now: float | None = None, *, fill: bool = True, eligible: set[str] | None = None
    ) -> list[Route]:
        """Liveness sweep, lease expiry, waiting batches, new batches; returns routes to send.

        With `fill=False` no new batch is started (e.g. while a stage's miner is not ready);
        `eligible`: the miners routes may use now (e.g. those that acknowledged their current
        assignment), None = every active one.
        """
        now = self._now(now)
        self.router.eligible = eligible
        with self._store.write() as txn:
            self.registry.sweep(txn, now)
            routes = self.router.expire(txn, now)
            return routes + (self._fill(txn, now) if fill else [])

    def issue_route(self, window: int, batch: int, now: float | None = None) -> Route | None:
        with self._store.write() as txn:
            return self.router.issue_route(txn, window, batch, self._now(now))

    def complete_hop(
        self, route_id: str, stage: int, direction: Direction | str, now: float | None = None
    ) -> HopOutcome:
        with self._store.write() as txn:
            return self.router.complete_hop(txn, route_id, stage, direction, self._now(now))

    def expire(self, now: float | None = None) -> list[Route]:
        with self._store.write() as txn:
            return self.router.expire(txn, self._now(now))

    def abandon(self, route_id: str, now: float | None = None) -> bool:
        with self._store.write() as txn:
            return self.router.abandon(txn, route_id, self._now(now))

    def finish_merge(self, now: float | None = None) -> RunState:
        with self._store.write() as txn:
            return self.clock.finish_merge(txn, self._now(now))

    def ingest_receipt(
        self,
        signer: str,
        receipt: Receipt | Mapping[str, Any],
        now: float | None = None,
        *,
        seq: int = 0,
        statement: bytes = b"",
    ) -> Refusal | None:
        """Stores a verified receipt; an accepted one also completes its hop on the open route."""
        return self.ingest_receipts(signer, [(receipt, seq, statement)], now)[0]

    def ingest_receipts(
        self,
        signer: str,
        receipts: Sequence[tuple[Receipt | Mapping[str, Any], int, bytes]],
        now: float | None = None,
        *,
        then: Callable[[WriteTxn, list[Refusal | None]], None] | None = None,
    ) -> list[Refusal | None]:
        """`ingest_receipt` for each (receipt, seq, statement) of one signer, in order and in one
        write transaction: a batch costs one synced commit, not one per receipt. `then` writes
        what follows from the outcomes (the run's losses) in the same transaction."""
        now = self._now(now)
        with self._store.write() as txn:
            refusals = [self._ingest(txn, signer, r, now, seq, st) for r, seq, st in receipts]
            if then is not None:
                then(txn, refusals)
            return refusals

    def _ingest(
        self,
        txn: WriteTxn,
        signer: str,
        receipt: Receipt | Mapping[str, Any],
        now: float,
        seq: int,
        statement: bytes,
    ) -> Refusal | None:
        refusal = self.ledger.ingest(txn, signer, receipt, now, seq=seq, statement=statement)
        if refusal is None:
            fields = receipt.meta() if isinstance(receipt, Receipt) else receipt
            window, batch, stage = fields["window"], fields["batch"], fields["stage"]
            record = self.router.batch(txn, window, batch)
            route = self.router.route(txn, record.routes[-1]) if record and record.routes else None
            if route and route.state is RouteState.OPEN and route.miners[stage] == signer:
                direction = Direction(fields["direction"])
                self.router.complete_hop(txn, route.route_id, stage, direction, now)
        return refusal

    # queries ---------------------------------------------------------------------------------

    def run_state(self) -> RunState:
        with self._store.read() as txn:
            return self.clock.state(txn)

    def miners(self) -> list[Miner]:
        with self._store.read() as txn:
            return self.registry.miners(txn)

    def route(self, route_id: str) -> Route | None:
        with self._store.read() as txn:
            return self.router.route(txn, route_id)

    def open_routes(self) -> list[Route]:
        with self._store.read() as txn:
            return self.router.open_routes(txn)

    def batch(self, window: int, batch: int) -> BatchRecord | None:
        with self._store.read() as txn:
            return self.router.batch(txn, window, batch)

    def leases(self) -> list[Lease]:
        return [lease for route in self.open_routes() for lease in route.leases()]

    def receipts_for(self, window: int, miner: str) -> list[ReceiptRecord]:
        with self._store.read() as txn:
            return self.ledger.receipts_for(txn, window, miner)

    def receipts_for_batch(self, window: int, batch: int) -> list[ReceiptRecord]:
        with self._store.read() as txn:
            return self.ledger.receipts_for_batch(txn, window, batch)

    def disputes(self, window: int) -> list[Dispute]:
        with self._store.read() as txn:
            return self.ledger.disputes(txn, window)

    def prune(self, keep_windows: int) -> int:
        """Forget the receipts and routes of windows older than the newest `keep_windows`."""
        return self._pruner.prune(self.run_state().window - keep_windows)

    def work_counts(self, window: int) -> dict[str, dict[str, int]]:
        with self._store.read() as txn:
            return self.ledger.work_counts(txn, window)

    def status(self) -> dict[str, Any]:
        """JSON-ready summary for the node's `/status`."""
        with self._store.read() as txn:
            state = self.clock.state(txn)
            miners = self.registry.miners(txn)
            open_routes = self.router.open_routes(txn)
            waiting = len(self.router.waiting(txn))
            receipts, disputes = self.ledger.counts(txn, state.window)
            hop_s = self.latency.estimates(txn)
        now = self._clock_fn()
        held = Counter(lease.miner for route in open_routes for lease in route.leases())
        stages: list[dict[str, Any]] = []
        for stage in range(self.config.assignment.n_stages):
            members = [m for m in miners if m.stage == stage]
            stages.append(
                {
                    "stage": stage,
                    "capacity": sum(m.capacity for m in members),
                    "hop_s": round(hop_s[stage], 4),
                    "miners": [_miner_status(m, held[m.peer_id], now) for m in members],
                }
            )
        return {
            "run_id": state.run_id,
            "window": state.window,
            "phase": state.phase.value,
            "batches": {
                "total": state.batches_total,
                "issued": state.issued,
                "completed": state.completed,
                "dropped": state.dropped,
                "open": len(open_routes),
                "waiting": waiting,
            },
            "stages": stages,
            "bottleneck": _bottleneck(stages),
            "standby": [
                _miner_status(m, 0, now)
                for m in miners
                if m.stage is None and m.state is not MinerState.GONE
            ],
            "miners": {s.value: sum(m.state is s for m in miners) for s in MinerState},
            "open_leases": sum(len(r.leases()) for r in open_routes),
            "receipts": receipts,
            "disputes": disputes,
        }

    def _fill(self, txn: WriteTxn, now: float) -> list[Route]:
        """Starts new batches of the window while in-flight routes stay under the limit."""
        state = self.clock.state(txn)
        if state.phase is not Phase.TRAIN or self.router.waiting(txn):
            return []
        used = {b.batch for b in self.router.batches(txn, state.window)}
        in_flight = len(self.router.open_routes(txn))
        if self.config.window.lockstep and in_flight:
            return []
        limit = self.config.window.max_in_flight * self._parallel(txn)
        issued: list[Route] = []
        for batch in range(state.batches_total):
            if in_flight >= limit:
                break
            if batch in used:
                continue
            route = self.router.issue_route(txn, state.window, batch, now)
            if route is None:
                break
            issued.append(route)
            in_flight += 1
        return issued

    def _parallel(self, txn: ReadTxn) -> int:
        """Routes that can run side by side: with step groups (`window.group_size` > 1) one
        group per miner of the stage with the fewest routable miners, else 1."""
        if self.config.window.group_size <= 1:
            return 1
        counts = [
            len(self.registry.routable(txn, s)) for s in range(self.registry.assignment.n_stages)
        ]
        return max(1, min(counts, default=1))

    def _now(self, now: float | None) -> float:
        return self._clock_fn() if now is None else now


def _miner_status(miner: Miner, leases: int, now: float) -> dict[str, Any]:
    """A miner's row: state, open leases it holds, leases missed in a row, seconds since seen."""
    return {
        "peer_id": miner.peer_id,
        "capacity": miner.capacity,
        "state": miner.state.value,
        "leases": leases,
        "misses": miner.misses,
        "seen_s_ago": round(max(now - miner.last_seen, 0.0), 1),
    }


def _bottleneck(stages: list[dict[str, Any]]) -> int | None:
    """The stage whose hops take longest per unit of its active miners' declared capacity."""
    loads = {
        s["stage"]: s["hop_s"] / active
        for s in stages
        if (active := sum(m["capacity"] for m in s["miners"] if m["state"] == "active")) > 0
    }
    return max(loads, key=loads.__getitem__) if loads else None
