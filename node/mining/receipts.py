"""Signed receipts, queued and sent to the orchestrator in batches.

Each unit of work becomes a `Receipt` signed with the node key (`Endpoint.statement`). They go
out as `ReceiptBatch`es every `flush_s`, or sooner once `batch` are queued or the miner asks
(`flush_soon`: stage 0 finished a batch, and the orchestrator finishes its route on that
receipt); a batch that fails stays queued and is retried. The queue is bounded: when the
orchestrator is away for too long, the oldest receipts are dropped and counted. Batches are
cut to stay well inside the envelope's head limit (receipt heads travel in the batch's head).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable

from node.service import Service
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.messages import Receipt, ReceiptBatch
from p2p.refusals import Reason, Refused

log = logging.getLogger(__name__)
MAX_BATCH_BYTES = 48 * 1024
"""Receipt heads per ReceiptBatch, in bytes (the whole head may hold 64 KiB)."""
FINAL = frozenset(
    {Reason.MALFORMED, Reason.TOO_LARGE, Reason.WRONG_RUN, Reason.UNKNOWN_TYPE}
    | {Reason.UNSUPPORTED_VERSION}
)
"""Refusals of a batch's content, which a retry would meet again; others are retried."""


class ReceiptSender(Service):
    name = "receipts"

    def __init__(
        self,
        endpoint: Endpoint,
        orchestrator: Callable[[], str | None],
        counters: Counter[str],
        *,
        flush_s: float,
        batch: int,
        max_queued: int,
        timeout_s: float,
    ) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._orchestrator = orchestrator
        self._counters = counters
        self._flush_s = flush_s
        self._batch = batch
        self._timeout_s = timeout_s
        self._queue: deque[bytes] = deque()
        self._max = max_queued
        self._full = asyncio.Event()
        self._in_flight = 0
        self._backing_off = False

    @property
    def queued(self) -> int:
        """Receipts not yet acknowledged by the orchestrator (queued or in flight)."""
        return len(self._queue) + self._in_flight

    def add(self, receipt: Receipt) -> None:
        """Sign `receipt` and queue it (dropping the oldest when the queue is full)."""
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self._counters["receipts_dropped"] += 1
        self._queue.append(self._endpoint.statement(receipt))
        self._counters["receipts_signed"] += 1
        if len(self._queue) >= self._batch:
            self._full.set()

    def flush_soon(self) -> None:
        """Send what is queued now rather than at the next `flush_s` (not while backing off
        after a failed batch)."""
        if self._queue and not self._backing_off:
            self._full.set()

    async def run(self) -> None:
        backoff = self._flush_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=backoff)
            self._full.clear()
            ok = await self.flush()
            backoff = self._flush_s if ok else min(max(backoff * 2, self._flush_s), 5.0)
            self._backing_off = not ok

    async def flush(self) -> bool:
        """Send everything queued; False if a batch failed (it stays queued)."""
        while self._queue:
            peer = self._orchestrator()
            if peer is None:
                return False
            heads = self._take()
            self._in_flight = len(heads)
            try:
                await self._endpoint.request(
                    peer, ReceiptBatch(receipts=heads), timeout=self._timeout_s
                )
            except Refused as exc:
                if exc.reason not in FINAL:
                    self._restore(heads)
                    self._counters["receipt_batches_failed"] += 1
                    log.info("receipts to %s refused for now (kept): %s", peer, exc)
                    return False
                # The same batch would be refused again: drop it rather than wedge the queue.
                self._counters["receipt_batches_refused"] += 1
                self._counters["receipts_dropped"] += len(heads)
                log.warning("orchestrator %s refused %d receipts: %s", peer, len(heads), exc)
                continue
            except (P2PError, TimeoutError, OSError) as exc:
                self._restore(heads)
                self._counters["receipt_batches_failed"] += 1
                log.info("receipts to %s not delivered (kept): %s", peer, exc)
                return False
            except BaseException:
                self._restore(heads)
                raise
            finally:
                self._in_flight = 0
            self._counters["receipt_batches_sent"] += 1
            self._counters["receipts_sent"] += len(heads)
        return True

    def _take(self) -> list[bytes]:
        heads: list[bytes] = []
        size = 0
        while self._queue and (not heads or size + len(self._queue[0]) <= MAX_BATCH_BYTES):
            head = self._queue.popleft()
            heads.append(head)
            size += len(head) + 8
        return heads

    def _restore(self, heads: list[bytes]) -> None:
        self._queue.extendleft(reversed(heads))
        while len(self._queue) > self._max:
            self._queue.popleft()
            self._counters["receipts_dropped"] += 1
