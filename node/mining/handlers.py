"""The pipeline's message handlers: Work (stage 0), Activation (forward), Gradient (backward).

Each validates on the event loop, cheapest first — the stage held, the tensor's dtype and shape,
the route's ticket and this miner's place on it, the window, the batch, capacity — and answers at
once; the compute is started on the pipeline and runs on the compute worker. A duplicate of a
message already taken (a neighbour's retry after a lost reply) is acknowledged, not redone.
"""

from __future__ import annotations

from node.mining.pipeline import Pipeline
from node.mining.state import BatchKey, MinerState, StageHolding
from node.mining.tickets import check_batch_index, check_route, verify_ticket
from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.messages import Ack, Activation, Gradient, Message, Work
from p2p.refusals import Reason, Refused

MAX_ROUTE_ID = 128


class Handlers:
    def __init__(
        self, state: MinerState, endpoint: Endpoint, pipeline: Pipeline, *, max_inflight: int
    ) -> None:
        self._state = state
        self._pipeline = pipeline
        self._max_inflight = max_inflight
        endpoint.register(Work, self.on_work)
        endpoint.register(Activation, self.on_activation)
        endpoint.register(Gradient, self.on_gradient)

    # handlers --------------------------------------------------------------------------------

    async def on_work(self, msg: Work, peer: PeerSession) -> Message:
        state = self._state
        holding = self._holding(0)
        if peer.peer_id != state.orchestrator:
            raise Refused(Reason.NOT_ALLOWED, "Work comes from the orchestrator that assigned us")
        work = self._ticket(holding, msg.ticket, msg.window, msg.batch, msg.route)
        if work.miners != msg.miners:
            raise Refused(Reason.BAD_TICKET, "Work names other miners than its ticket")
        if work.miners[0] != state.peer_id:
            raise Refused(Reason.BAD_TICKET, f"the route names {work.miners[0]} for stage 0")
        key = (msg.window, msg.batch, msg.route)
        if self._duplicate(key, msg.ticket):
            return Ack()
        self._open(key, msg.ticket, work.miners)
        self._pipeline.forward(holding, key, None)
        return Ack()

    async def on_activation(self, msg: Activation, peer: PeerSession) -> Message:
        holding = self._holding(msg.stage)
        if msg.stage == 0:
            raise Refused(Reason.NOT_ASSIGNED, "stage 0 takes Work, not activations")
        holding.wire.check(msg.tensor)
        work = self._ticket(holding, msg.ticket, msg.window, msg.batch, msg.route)
        check_route(
            work, stage=msg.stage, me=self._state.peer_id, sender=peer.peer_id, upstream=True
        )
        key = (msg.window, msg.batch, msg.route)
        if self._duplicate(key, msg.ticket):
            return Ack()
        self._open(key, msg.ticket, work.miners)
        self._pipeline.forward(holding, key, msg.tensor)
        return Ack()

    async def on_gradient(self, msg: Gradient, peer: PeerSession) -> Message:
        holding = self._holding(msg.stage)
        if holding.is_last:
            raise Refused(Reason.NOT_ASSIGNED, "the last stage takes no gradients")
        holding.wire.check(msg.tensor)
        work = self._ticket(holding, msg.ticket, msg.window, msg.batch, msg.route)
        check_route(
            work, stage=msg.stage, me=self._state.peer_id, sender=peer.peer_id, upstream=False
        )
        key = (msg.window, msg.batch, msg.route)
        batches = self._state.batches
        entry = batches.open.get(key)
        if entry is None:
            if batches.finished_with(key, msg.ticket):
                return Ack()
            raise Refused(Reason.UNKNOWN_BATCH, f"no forward of batch {key} is held here")
        if entry.ticket != msg.ticket:
            raise Refused(Reason.BAD_TICKET, "the gradient's ticket differs from its forward's")
        if entry.backward_queued:
            return Ack()
        if not entry.forwarded:
            raise Refused(Reason.UNKNOWN_BATCH, f"batch {key} is still being forwarded")
        entry.backward_queued = True
        self._pipeline.backward(holding, key, msg.tensor)
        return Ack()

    # checks ----------------------------------------------------------------------------------

    def _holding(self, stage: int) -> StageHolding:
        holding = self._state.holding
        if holding is None:
            raise Refused(Reason.NOT_ASSIGNED, "this miner holds no stage")
        if holding.stage != stage:
            raise Refused(
                Reason.NOT_ASSIGNED, f"this miner holds stage {holding.stage}, not {stage}"
            )
        return holding

    def _ticket(
        self, holding: StageHolding, ticket: bytes, window: int, batch: int, route: str
    ) -> Work:
        state = self._state
        if not route or len(route) > MAX_ROUTE_ID:
            raise Refused(Reason.BAD_TICKET, f"route id of {len(route)} characters")
        if state.orchestrator is None:
            raise Refused(Reason.NOT_ASSIGNED, "no orchestrator has assigned this miner")
        work = verify_ticket(
            ticket,
            run=state.run_id,
            orchestrator=state.orchestrator,
            window=window,
            batch=batch,
            route=route,
            n_stages=holding.n_stages,
        )
        if window != state.window or state.closing == window:
            why = "is closing" if state.closing == window else f"is not open (at {state.window})"
            raise Refused(Reason.WRONG_WINDOW, f"window {window} {why}")
        check_batch_index(batch, holding.spec.batches_per_window)
        return work

    def _duplicate(self, key: BatchKey, ticket: bytes) -> bool:
        batches = self._state.batches
        entry = batches.open.get(key)
        if entry is not None:
            if entry.ticket != ticket:
                raise Refused(Reason.BAD_TICKET, f"batch {key} is open under another ticket")
            return True
        return batches.finished_with(key, ticket)

    def _open(self, key: BatchKey, ticket: bytes, miners: list[str]) -> None:
        state = self._state
        if len(state.batches) >= self._max_inflight:
            raise Refused(
                Reason.OVER_CAPACITY, f"{len(state.batches)} batches in flight on this stage"
            )
        state.batches.add(key, ticket, miners)
