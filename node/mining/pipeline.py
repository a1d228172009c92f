"""The pipeline's work after a message was accepted: compute, receipts, retention, send on.

The handlers (`node.mining.handlers`) open a batch and call `forward` or `backward`; the job runs
on the compute worker, then each unit of work is signed as a receipt and queued for retention,
and the result goes to the route's next hop. A batch whose result cannot be delivered, or whose
gradient does not come within the batch timeout, is forgotten (freeing its capacity).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from node.mining import compute
from node.mining.compute import StepResult
from node.mining.faults import Behaviour
from node.mining.receipts import ReceiptSender
from node.mining.retention import RetainedUnit, Retention
from node.mining.sender import send_with_retry
from node.mining.state import BatchKey, MinerState, StageHolding
from node.mining.worker import ComputeWorker
from node.service import Service
from p2p.body_codec import deflate
from p2p.endpoint import Endpoint
from p2p.messages import Activation, Gradient, Message, Receipt
from p2p.tensors import TensorPayload

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineLimits:
    send_timeout_s: float
    batch_timeout_s: float


class Pipeline(Service):
    name = "pipeline"

    def __init__(
        self,
        state: MinerState,
        endpoint: Endpoint,
        worker: ComputeWorker,
        receipts: ReceiptSender,
        retention: Retention | None,
        limits: PipelineLimits,
    ) -> None:
        super().__init__()
        self._state = state
        self._endpoint = endpoint
        self._worker = worker
        self._receipts = receipts
        self._retention = retention
        self._limits = limits
        self._tasks: set[asyncio.Task[None]] = set()
        self.behaviour: Behaviour | None = None
        """A fault (`miner.fault`); None: honest, `node.mining.compute` itself."""

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(min(self._limits.batch_timeout_s / 4, 5.0))
                self.expire()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def forward(self, holding: StageHolding, key: BatchKey, payload: TensorPayload | None) -> None:
        """Start the forward of an accepted (open) batch: compute, record, send on."""
        self._spawn(self._forward(holding, key, payload))

    def backward(self, holding: StageHolding, key: BatchKey, payload: TensorPayload) -> None:
        """Start the backward of an open, forwarded batch from the next stage's gradient."""
        self._spawn(self._backward(holding, key, payload))

    # compute and send on ---------------------------------------------------------------------

    async def _forward(
        self, holding: StageHolding, key: BatchKey, payload: TensorPayload | None
    ) -> None:
        fwd = compute.forward if self.behaviour is None else self.behaviour.forward
        result = await self._compute(holding, key, partial(fwd, holding, key, payload))
        state = self._state
        if result is None:
            return
        entry = state.batches.open.get(key)
        if holding.is_last:
            self._finish(holding, key)
        elif entry is not None:
            entry.forwarded = True
        if entry is None or result.send is None:
            return
        stage = holding.stage
        nxt = stage - 1 if holding.is_last else stage + 1
        cls = Gradient if holding.is_last else Activation
        msg = cls(
            window=key[0],
            batch=key[1],
            stage=nxt,
            route=key[2],
            ticket=entry.ticket,
            tensor=result.send,
        )
        what = "gradient" if holding.is_last else "activation"
        if not await self._send(entry.miners[nxt], msg, what) and not holding.is_last:
            self._forget(holding, key)

    async def _backward(self, holding: StageHolding, key: BatchKey, payload: TensorPayload) -> None:
        entry = self._state.batches.open.get(key)
        bwd = compute.backward if self.behaviour is None else self.behaviour.backward
        result = await self._compute(holding, key, partial(bwd, holding, key, payload))
        if result is None or entry is None:
            return
        self._finish(holding, key)
        if result.send is not None:
            msg = Gradient(
                window=key[0],
                batch=key[1],
                stage=holding.stage - 1,
                route=key[2],
                ticket=entry.ticket,
                tensor=result.send,
            )
            await self._send(entry.miners[holding.stage - 1], msg, "gradient")

    async def _compute(
        self, holding: StageHolding, key: BatchKey, job: partial[StepResult]
    ) -> StepResult | None:
        state = self._state
        try:
            result = await self._worker.submit(lambda: _if_current(state, holding, job))
        except asyncio.QueueFull:
            state.counters["compute_queue_full"] += 1
            self._drop(holding, key)
            return None
        except Exception as exc:  # the engine refused the input: never the node's end
            state.counters["compute_failed"] += 1
            log.warning("compute of batch %s on stage %s failed: %r", key, holding.stage, exc)
            self._forget(holding, key)
            return None
        if result is None or state.holding is not holding:
            state.counters["stale_jobs"] += 1
            return None
        for part, seconds in result.seconds.items():
            state.job_seconds[part] += seconds
        for unit in result.units:
            self._record(holding, key, unit)
        return result

    def _record(self, holding: StageHolding, key: BatchKey, unit: compute.UnitRecord) -> None:
        state = self._state
        window, batch, route = key
        state.counters[unit.direction] += 1
        state.last_weights_version = unit.weights_version
        if unit.loss is not None:
            state.last_loss = unit.loss
        self._receipts.add(
            Receipt(
                window=window,
                batch=batch,
                stage=holding.stage,
                direction=unit.direction,
                input_digest=unit.input_digest,
                output_digest=unit.output_digest,
                weights_version=unit.weights_version,
                route=route,
                loss=unit.loss,
            )
        )
        if self._retention is not None:
            self._retention.add(
                RetainedUnit(
                    window=window,
                    batch=batch,
                    stage=holding.stage,
                    direction=unit.direction,
                    route=route,
                    inputs=unit.inputs,
                    outputs=unit.outputs,
                    input_digest=unit.input_digest,
                    output_digest=unit.output_digest,
                    weights_version=unit.weights_version,
                )
            )

    async def _send(self, peer: str, msg: Message, what: str) -> bool:
        started = time.perf_counter()
        try:
            sent = await send_with_retry(
                self._endpoint,
                peer,
                msg,
                deadline_s=self._limits.send_timeout_s,
                counters=self._state.counters,
                what=what,
            )
        finally:
            self._state.seconds["send"] += time.perf_counter() - started
        if sent and msg.payload is not None:
            self._state.counters[f"{what}_bytes"] += len(msg.payload.data)
        return sent

    def _finish(self, holding: StageHolding, key: BatchKey) -> None:
        """The batch is done here. On stage 0 that ends its route: the orchestrator finishes
        the route on this receipt and starts the batches waiting for it, so it goes out now
        rather than with the next `receipt_flush_s` batch."""
        self._state.batches.finish(key)
        if holding.is_first:
            self._receipts.flush_soon()

    # forgetting ------------------------------------------------------------------------------

    def expire(self) -> None:
        """Forget batches whose gradient has not come within the batch timeout."""
        state = self._state
        holding = state.holding
        if holding is None:
            return
        for key in state.batches.expired(self._limits.batch_timeout_s):
            state.counters["batches_expired"] += 1
            self._forget(holding, key)

    def _forget(self, holding: StageHolding, key: BatchKey) -> None:
        self._drop(holding, key)
        with contextlib.suppress(asyncio.QueueFull):  # else the engine's bounded cache evicts it
            self._worker.submit(partial(compute.forget, holding, [key]))

    def _drop(self, holding: StageHolding, key: BatchKey) -> None:
        if self._state.holding is holding:
            self._state.batches.drop(key)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _if_current(
    state: MinerState, holding: StageHolding, job: partial[StepResult]
) -> StepResult | None:
    """Run on the compute thread: skip jobs of a stage that was replaced meanwhile; deflate
    what goes on where its dtype may travel deflated (int8 codes) and that saves bytes."""
    if state.holding is not holding:
        return None
    result = job()
    send = result.send
    if send is None or send.dtype not in Activation.deflate_dtypes:
        return result
    started = time.perf_counter()
    packed = deflate(send)
    seconds = dict(result.seconds)
    seconds["serialise"] = seconds.get("serialise", 0.0) + time.perf_counter() - started
    return dataclasses.replace(result, send=packed, seconds=seconds)
