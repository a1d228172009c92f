"""Sending routes to their first stage, and taking in the miners' signed receipts.

A route goes out as a `Work` to its stage-0 miner, carrying its own orchestrator-signed head as
the route's ticket. Receipts come back in `ReceiptBatch`es: each item is verified as a statement
signed by the sending miner before the ledger sees it; the last stage's losses are kept for the
run's history.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter, deque

from node.orchestration import Orchestrator, Route
from node.orchestration.ledger import Refusal
from node.run_control.history import RunHistory
from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.messages import Ack, Message, Receipt, ReceiptBatch, Work
from p2p.refusals import Reason, Refused
from p2p.statements import open_statement
from store import WriteTxn

log = logging.getLogger(__name__)
MAX_RECEIPTS_PER_BATCH = 1024


class WorkDispatcher:
    def __init__(self, endpoint: Endpoint, *, timeout_s: float) -> None:
        self._endpoint = endpoint
        self._timeout = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._queues: dict[str, deque[Route]] = {}
        """Routes waiting to be sent, per stage-0 miner; the head is being sent."""
        self.counters: Counter[str] = Counter()
        self.unassigned: deque[str] = deque(maxlen=64)
        """Miners that refused work as not assigned (they must be assigned again)."""
        self.refused: deque[str] = deque(maxlen=4096)
        """Routes their first miner refused (to put back among the waiting batches)."""

    def send(self, routes: list[Route]) -> None:
        """Send each route's `Work` to its stage-0 miner; a miner's routes go one after another,
        in the order issued. A miner computes its batches in the order their `Work` arrives, and
        so accumulates their gradients in that order: concurrent requests, over as many pooled
        connections, arrived in any order, and a swapped pair rounded the step differently
        from one-process training."""
        for route in routes:
            first = route.miners[0]
            queue = self._queues.setdefault(first, deque())
            queue.append(route)
            if len(queue) == 1:
                task = asyncio.create_task(self._drain(first, queue), name=f"work/{first}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drain(self, miner: str, queue: deque[Route]) -> None:
        try:
            while queue:
                await self._send(queue[0])
                queue.popleft()
        finally:
            queue.clear()
            if self._queues.get(miner) is queue:
                del self._queues[miner]

    async def _send(self, route: Route) -> None:
        work = Work(
            window=route.window, batch=route.batch, route=route.route_id, miners=list(route.miners)
        )
        ticket = self._endpoint.statement(work)
        first = route.miners[0]
        try:
            await self._endpoint.request(
                first, dataclasses.replace(work, ticket=ticket), timeout=self._timeout
            )
            self.counters["sent"] += 1
        except Refused as exc:
            self.counters[f"refused_{exc.reason.value}"] += 1
            if exc.reason is Reason.NOT_ASSIGNED:
                self.unassigned.append(first)
            self.refused.append(route.route_id)
            log.info("route %s refused by %s: %s", route.route_id, first, exc)
        except (P2PError, TimeoutError) as exc:
            self.counters["failed"] += 1
            log.info("route %s not delivered to %s: %s", route.route_id, first, exc)


class ReceiptIntake:
    """The `ReceiptBatch` handler: verify each signed receipt and hand it to the ledger."""

    def __init__(self, orchestrator: Orchestrator, history: RunHistory, run_id: str) -> None:
        self._orch = orchestrator
        self._history = history
        self._run = run_id
        self.counters: Counter[str] = Counter()
        self.recent_losses: deque[float] = deque(maxlen=256)
        self.routes_done = asyncio.Event()
        """Set when a stage-0 backward receipt was accepted: it finishes its route, so the
        tick loop may start the next batches now rather than at its next tick."""

    async def on_batch(self, msg: ReceiptBatch, peer: PeerSession) -> Message:
        if len(msg.receipts) > MAX_RECEIPTS_PER_BATCH:
            raise Refused(Reason.TOO_LARGE, f"{len(msg.receipts)} receipts in one batch")
        opened: list[tuple[Receipt, int, bytes]] = []
        for head in msg.receipts:
            try:
                receipt, header = open_statement(head, Receipt, run=self._run, signer=peer.peer_id)
            except Refused as exc:
                self.counters[exc.reason.value] += 1
                continue
            opened.append((receipt, header.seq, head))
        if not opened:
            return Ack()
        accepted: list[Receipt] = []

        def record_losses(txn: WriteTxn, refusals: list[Refusal | None]) -> None:
            accepted[:] = [r for (r, _, _), no in zip(opened, refusals, strict=True) if no is None]
            losses: dict[int, dict[int, float]] = {}
            for receipt in accepted:
                if receipt.loss is not None and receipt.direction == "forward":
                    losses.setdefault(receipt.window, {})[receipt.batch] = receipt.loss
            for window, by_batch in losses.items():
                self._history.put_losses(txn, window, by_batch)

        refusals = self._orch.ingest_receipts(peer.peer_id, opened, then=record_losses)
        for refusal in refusals:
            self.counters["accepted" if refusal is None else str(refusal)] += 1
        self.recent_losses.extend(
            r.loss for r in accepted if r.loss is not None and r.direction == "forward"
        )
        if any(r.stage == 0 and r.direction == "backward" for r in accepted):
            self.routes_done.set()
        return Ack()
