"""Closing a window: save the stage's checkpoint at a step boundary and report its digest.

On `WindowClose(w)` from its orchestrator the miner stops taking messages of w, lets the compute
worker finish what it holds (the save is queued behind it), requires the optimizer to be at a
step boundary, saves the checkpoint into its blob store (kept `checkpoint_retention_s`, served
by BlobRequest), hands the window's receipts and retained tensors over (`flush`: sent to the
orchestrator and written to the store, so an auditor that sees the window closed finds all of
its evidence) and answers `WeightsReport`; then it is in window w + 1. A repeated close of the
window just closed gets the same report. If backward passes still wait for an optimizer step,
the close is refused and the stage is rolled back to the checkpoint the window started from
(what the orchestrator keeps for a stage that did not report), then moves on to w + 1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from node.mining import compute
from node.mining.single_flight import run_shared
from node.mining.state import MinerState, StageHolding
from node.mining.worker import ComputeWorker
from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.messages import Message, WeightsReport, WindowClose
from p2p.refusals import Reason, Refused
from store import BlobStore, StoreError

log = logging.getLogger(__name__)


class WindowCloser:
    def __init__(
        self,
        state: MinerState,
        endpoint: Endpoint,
        worker: ComputeWorker,
        blobs: BlobStore,
        rollback: Callable[[StageHolding, int], Coroutine[Any, Any, None]],
        *,
        checkpoint_retention_s: float,
        flush: Callable[[], Coroutine[Any, Any, object]] | None = None,
    ) -> None:
        self._state = state
        self._worker = worker
        self._blobs = blobs
        self._rollback = rollback
        self._keep_s = checkpoint_retention_s
        self._flush = flush
        self._closing: asyncio.Future[WeightsReport] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        endpoint.register(WindowClose, self.on_close)

    async def on_close(self, msg: WindowClose, peer: PeerSession) -> Message:
        state = self._state
        if peer.peer_id != state.orchestrator:
            raise Refused(Reason.NOT_ALLOWED, "only the assigning orchestrator closes windows")
        if state.holding is None:
            raise Refused(Reason.NOT_ASSIGNED, "this miner holds no stage")
        report = state.last_report
        if report is not None and report.window == msg.window:
            return report
        if state.closing == msg.window and self._closing is not None:
            return await asyncio.shield(self._closing)
        if msg.window != state.window:
            raise Refused(Reason.WRONG_WINDOW, f"window {msg.window} is not open here")
        future = self._closing = asyncio.get_running_loop().create_future()
        state.closing = msg.window
        try:
            return await run_shared(future, self._close(msg.window))
        finally:
            self._closing = None
            if state.closing == msg.window:
                state.closing = None

    async def _close(self, window: int) -> WeightsReport:
        state = self._state
        holding = state.holding
        assert holding is not None
        keys = state.batches.of_windows_up_to(window)
        started = time.perf_counter()
        await asyncio.sleep(0)  # let tasks of messages taken before the close queue their jobs
        job = partial(compute.save_checkpoint, holding, keys)
        try:
            data = await self._worker.submit(job)
        except asyncio.QueueFull:
            raise Refused(Reason.OVER_CAPACITY, "the compute queue is full") from None
        except compute.PendingGradients as exc:
            state.counters["close_refused"] += 1
            if state.holding is holding:
                state.holding = None  # take no work until rolled back
                self._spawn(self._rollback(holding, window + 1))
            raise Refused(
                Reason.WRONG_WINDOW,
                f"window {window} does not end at an optimizer step: {exc}; rolling back to "
                f"checkpoint {holding.weights or 'seed'}",
            ) from None
        except (OSError, RuntimeError, ValueError) as exc:
            state.counters["close_failed"] += 1
            log.error("saving stage %s at window %s failed: %r", holding.stage, window, exc)
            raise Refused(Reason.INTERNAL, f"checkpoint not saved: {exc}") from None
        try:
            digest = await asyncio.to_thread(self._blobs.put, data, retain_s=self._keep_s)
        except StoreError as exc:
            state.counters["close_failed"] += 1
            raise Refused(Reason.INTERNAL, f"checkpoint not stored: {exc}") from None
        state.seconds["save"] += time.perf_counter() - started
        if state.holding is not holding:
            raise Refused(Reason.NOT_ASSIGNED, "the stage was reassigned while closing")
        if self._flush is not None:
            await self._flush()
        engine = holding.engine
        holding.weights = digest
        for key in keys:
            state.batches.drop(key)
        state.window = window + 1
        report = WeightsReport(
            window=window,
            stage=holding.stage,
            digest=digest,
            weights_version=engine.weights_version,
            backward_passes=engine.backward_passes,
        )
        state.last_report = report
        state.counters["windows_closed"] += 1
        log.info("window %s closed on stage %s: checkpoint %s", window, holding.stage, digest)
        return report

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
