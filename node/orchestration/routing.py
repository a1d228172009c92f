"""Routing: issue a batch to one miner per stage, track each hop's lease, re-route on expiry.

A batch has at most one open route. When a lease expires the late miner gets a miss (suspect,
or gone after `max_misses`), the route is closed as expired and the batch goes to a new route
(same batch, attempt + 1) over miners that are active; a stage with no active miner leaves the
batch waiting until one is. After `max_attempts` expired routes the batch is dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from node.orchestration.keys import ROUTES, Keys
from node.orchestration.leases import LatencyModel
from node.orchestration.registry import Miner, MinerState, Registry
from node.orchestration.routes import (
    BatchRecord,
    BatchState,
    Direction,
    Hop,
    HopOutcome,
    Route,
    RouteState,
    route_id_for,
)
from node.orchestration.window import Phase, WindowClock, WindowError
from store import ReadTxn, WriteTxn


@dataclass(kw_only=True, slots=True)
class RoutingConfig:
    """How often a batch is retried on fresh routes before it is dropped."""

    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


class Router:
    """Routes, batches and leases in the `routes` table, inside the caller's transaction."""

    def __init__(
        self,
        keys: Keys,
        config: RoutingConfig,
        registry: Registry,
        clock: WindowClock,
        latency: LatencyModel,
    ) -> None:
        self._keys = keys
        self.config = config
        self._registry = registry
        self._clock = clock
        self._latency = latency
        self._n = registry.assignment.n_stages
        self.group_size = 1
        """Batches per optimizer step of every miner (the run's `accumulate`)."""
        self.eligible: set[str] | None = None
        """Miners routes may use (None: every active miner of a stage)."""

    # queries ---------------------------------------------------------------------------------

    def route(self, txn: ReadTxn, route_id: str) -> Route | None:
        record = txn.get(ROUTES, self._keys.route(route_id))
        return None if record is None else Route.from_record(record)

    def open_routes(self, txn: ReadTxn) -> list[Route]:
        ids = [str(v) for _, v in txn.scan(ROUTES, self._keys.open_routes())]
        return [r for r in (self.route(txn, i) for i in ids) if r is not None]

    def batch(self, txn: ReadTxn, window: int, batch: int) -> BatchRecord | None:
        record = txn.get(ROUTES, self._keys.batch(window, batch))
        return None if record is None else BatchRecord.from_record(record)

    def batches(self, txn: ReadTxn, window: int) -> list[BatchRecord]:
        scan = txn.scan(ROUTES, self._keys.batches(window))
        return [BatchRecord.from_record(r) for _, r in scan]

    def routes_for_batch(self, txn: ReadTxn, window: int, batch: int) -> list[Route]:
        record = self.batch(txn, window, batch)
        routes = [] if record is None else [self.route(txn, i) for i in record.routes]
        return [r for r in routes if r is not None]

    def waiting(self, txn: ReadTxn) -> list[BatchRecord]:
        found = (self.batch(txn, int(w), int(b)) for w, b in self._waiting_ids(txn))
        return [r for r in found if r is not None]

    # commands --------------------------------------------------------------------------------

    def issue_route(self, txn: WriteTxn, window: int, batch: int, now: float) -> Route | None:
        """Starts `batch` of the current window; None if it has to wait for miners."""
        state = self._clock.state(txn)
        if state.phase is not Phase.TRAIN or window != state.window:
            raise WindowError(
                f"window {window} is not training (run at {state.window}, {state.phase})"
            )
        if not 0 <= batch < state.batches_total:
            raise WindowError(f"batch {batch} outside 0..{state.batches_total - 1}")
        if self.batch(txn, window, batch) is not None:
            raise WindowError(f"batch {batch} of window {window} was already issued")
        self._clock.batch_started(txn)
        return self._attempt(txn, BatchRecord(window=window, batch=batch), now)

    def complete_hop(
        self, txn: WriteTxn, route_id: str, stage: int, direction: Direction | str, now: float
    ) -> HopOutcome:
        """Records that `stage` finished `direction` on the route; earlier hops are implied.

        ValueError if `direction` is not "forward" or "backward".
        """
        direction = Direction(direction)
        route = self.route(txn, route_id)
        if route is None or not 0 <= stage < self._n:
            return HopOutcome.UNKNOWN
        if route.state is not RouteState.OPEN:
            return HopOutcome.NOT_OPEN
        hop, last = route.hops[stage], self._n - 1
        if direction is Direction.FORWARD:
            if hop.fwd_done is not None:
                return HopOutcome.DUPLICATE
            for j in range(stage + 1):
                if route.hops[j].fwd_done is None:
                    self._finish_forward(txn, route, j, now, implied=j < stage)
        else:
            if hop.bwd_done is not None:
                return HopOutcome.DUPLICATE
            for j in range(self._n):
                if route.hops[j].fwd_done is None:
                    self._finish_forward(txn, route, j, now, implied=True)
            for j in range(last, stage - 1, -1):
                if route.hops[j].bwd_done is None:
                    self._finish_backward(txn, route, j, now, implied=j > stage)
        self._registry.record_success(txn, hop.miner)
        if not route.hops[0].finished:
            self._put_route(txn, route)
            return HopOutcome.RECORDED
        route.state, route.finished_at = RouteState.DONE, now
        self._put_route(txn, route)
        record = self.batch(txn, route.window, route.batch)
        if record is not None:
            record.state, record.finished_at = BatchState.DONE, now
            self._put_batch(txn, record)
        self._clock.batch_finished(txn, now, dropped=False)
        return HopOutcome.ROUTE_DONE

    def expire(self, txn: WriteTxn, now: float) -> list[Route]:
        """Closes routes with a lapsed lease or a gone miner and re-issues their batches.

        Returns the routes issued by this call, re-issues and formerly waiting batches alike.
        """
        expired: list[Route] = []
        for route in self.open_routes(txn):
            late = [h.miner for h in route.hops if h.deadline is not None and now > h.deadline]
            if late or any(not h.finished and self._gone(txn, h.miner) for h in route.hops):
                route.state, route.finished_at = RouteState.EXPIRED, now
                self._put_route(txn, route)
                for miner in late:
                    self._registry.record_miss(txn, miner)
                expired.append(route)
        issued: list[Route] = []
        for route in expired:
            record = self.batch(txn, route.window, route.batch)
            if record is None:
                continue
            if len(record.routes) >= self.config.max_attempts:
                self._drop(txn, record, now, "max_attempts")
                continue
            new = self._attempt(txn, record, now)
            if new is not None:
                issued.append(new)
        return issued + self.retry_waiting(txn, now)

    def abandon(self, txn: WriteTxn, route_id: str, now: float) -> bool:
        """Closes an open route whose first miner refused it (nothing was computed on it) and
        puts its batch back among the waiting, to be routed at the next tick; no miss is
        recorded (a refusal is an answer). False when the route is not open or has started."""
        route = self.route(txn, route_id)
        if (
            route is None
            or route.state is not RouteState.OPEN
            or any(h.fwd_done is not None for h in route.hops)
        ):
            return False
        route.state, route.finished_at = RouteState.EXPIRED, now
        self._put_route(txn, route)
        record = self.batch(txn, route.window, route.batch)
        if record is None or record.state is not BatchState.OPEN:
            return True
        if len(record.routes) >= self.config.max_attempts:
            self._drop(txn, record, now, "max_attempts")
        else:
            self._wait(txn, record)
        return True

    def retry_waiting(self, txn: WriteTxn, now: float) -> list[Route]:
        """Routes waiting batches, oldest first, while every stage has an active miner."""
        issued: list[Route] = []
        for record in self.waiting(txn):
            route = self._attempt(txn, record, now)
            if route is None:
                break
            issued.append(route)
        return issued

    # internals -------------------------------------------------------------------------------

    def _attempt(self, txn: WriteTxn, record: BatchRecord, now: float) -> Route | None:
        miners = self._pick(txn, record)
        waiting_key = self._keys.waiting(record.window, record.batch)
        if miners is None:
            self._wait(txn, record)
            return None
        attempt = len(record.routes) + 1
        route = Route(
            route_id=route_id_for(record.window, record.batch, attempt),
            window=record.window,
            batch=record.batch,
            attempt=attempt,
            issued_at=now,
            hops=[Hop(miner=m) for m in miners],
            replaces=record.routes[-1] if record.routes else None,
        )
        self._arm_forward(txn, route.hops[0], 0, now)
        record.routes.append(route.route_id)
        record.state = BatchState.OPEN
        txn.delete(ROUTES, waiting_key)
        self._put_batch(txn, record)
        self._put_route(txn, route)
        return route

    def _pick(self, txn: ReadTxn, record: BatchRecord) -> list[str] | None:
        """Per stage the active miner with the fewest unfinished hops (then rank, capacity, id).

        Batches of one optimizer-step group (`group_size` consecutive batches) keep the miners
        an earlier batch of the group was routed through while those are routable, so each
        miner's optimizer steps cover whole groups, as one-process training's do. Among equally
        loaded miners a stage prefers the one whose rank (by peer id) is stage 0's pick's, so
        routes follow steady chains of miners rather than a fresh mix per group (a stage's
        miners then merge replicas that each trained as one whole model)."""
        group = self._group_miners(txn, record)
        loads: Counter[str] = Counter(
            h.miner for r in self.open_routes(txn) for h in r.hops if not h.finished
        )
        picked: list[str] = []
        rank = 0
        for stage in range(self._n):
            candidates = sorted(self.candidates(txn, stage), key=lambda m: m.peer_id)
            if not candidates:
                return None
            ids = [m.peer_id for m in candidates]
            if group is not None and group[stage] in ids:
                choice = group[stage]
            else:
                same_rank = ids[rank % len(ids)] if stage else None
                choice = min(
                    candidates,
                    key=lambda m: (
                        loads[m.peer_id],
                        m.peer_id != same_rank,
                        -m.capacity,
                        m.peer_id,
                    ),
                ).peer_id
            if stage == 0:
                rank = ids.index(choice)
            picked.append(choice)
        return picked

    def candidates(self, txn: ReadTxn, stage: int) -> list[Miner]:
        """The stage's active miners that routes may use now."""
        routable = self._registry.routable(txn, stage)
        if self.eligible is None:
            return routable
        return [m for m in routable if m.peer_id in self.eligible]

    def _group_miners(self, txn: ReadTxn, record: BatchRecord) -> list[str] | None:
        size = self.group_size
        if size <= 1:
            return None
        first = record.batch - record.batch % size
        for batch in range(first, first + size):
            other = self.batch(txn, record.window, batch) if batch != record.batch else None
            route = self.route(txn, other.routes[-1]) if other and other.routes else None
            if route is not None:
                return [h.miner for h in route.hops]
        return None

    def _finish_forward(
        self, txn: WriteTxn, route: Route, stage: int, now: float, *, implied: bool
    ) -> None:
        hop = route.hops[stage]
        if hop.fwd_at is None:
            self._arm_forward(txn, hop, stage, now)
            hop.exact = False
        hop.fwd_done, hop.deadline = now, None
        hop.exact = hop.exact and not implied
        if stage + 1 < self._n:
            nxt = route.hops[stage + 1]
            if nxt.fwd_at is None:
                self._arm_forward(txn, nxt, stage + 1, now)
                nxt.exact = nxt.exact and not implied
        else:
            self._arm_backward(hop, now)

    def _finish_backward(
        self, txn: WriteTxn, route: Route, stage: int, now: float, *, implied: bool
    ) -> None:
        hop = route.hops[stage]
        if hop.bwd_at is None:
            self._arm_backward(hop, now)
            hop.exact = False
        hop.bwd_done, hop.deadline = now, None
        hop.exact = hop.exact and not implied
        if hop.exact and hop.fwd_at is not None and hop.fwd_done is not None:
            assert hop.bwd_at is not None
            sample = (hop.fwd_done - hop.fwd_at) + (now - hop.bwd_at)
            self._latency.observe(txn, stage, sample)
        if stage > 0:
            prev = route.hops[stage - 1]
            if prev.bwd_at is None:
                self._arm_backward(prev, now)
                prev.exact = prev.exact and not implied

    def _arm_forward(self, txn: ReadTxn, hop: Hop, stage: int, now: float) -> None:
        hop.budget_s = self._latency.budget(txn, stage)
        hop.fwd_at, hop.deadline = now, now + hop.budget_s

    def _arm_backward(self, hop: Hop, now: float) -> None:
        # What the forward pass left of the budget, floored so a slow but timely forward
        # does not leave the backward pass a zero-length lease.
        used = (hop.fwd_done or now) - (hop.fwd_at or now)
        hop.bwd_at = now
        hop.deadline = now + max(hop.budget_s - used, self._latency.config.min_s)

    def _wait(self, txn: WriteTxn, record: BatchRecord) -> None:
        record.state = BatchState.WAITING
        self._put_batch(txn, record)
        key = self._keys.waiting(record.window, record.batch)
        txn.put(ROUTES, key, [record.window, record.batch])

    def _drop(self, txn: WriteTxn, record: BatchRecord, now: float, reason: str) -> None:
        record.state, record.reason, record.finished_at = BatchState.DROPPED, reason, now
        self._put_batch(txn, record)
        txn.delete(ROUTES, self._keys.waiting(record.window, record.batch))
        self._clock.batch_finished(txn, now, dropped=True)

    def _gone(self, txn: ReadTxn, peer_id: str) -> bool:
        miner = self._registry.get(txn, peer_id)
        return miner is None or miner.state is MinerState.GONE

    def _waiting_ids(self, txn: ReadTxn) -> list[tuple[int, int]]:
        return [(int(v[0]), int(v[1])) for _, v in txn.scan(ROUTES, self._keys.waiting_all())]

    def _put_route(self, txn: WriteTxn, route: Route) -> None:
        txn.put(ROUTES, self._keys.route(route.route_id), route.to_record())
        if route.state is RouteState.OPEN:
            txn.put(ROUTES, self._keys.open_route(route.route_id), route.route_id)
        else:
            txn.delete(ROUTES, self._keys.open_route(route.route_id))

    def _put_batch(self, txn: WriteTxn, record: BatchRecord) -> None:
        txn.put(ROUTES, self._keys.batch(record.window, record.batch), record.to_record())
