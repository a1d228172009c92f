"""The miner's side of a stage merge: MergeStart from the orchestrator, after a window close.

The member flattens its stage's parameters, encodes its contribution (fp32 values, or for bf16 /
int8 the change since the window's start plus what rounding lost last time), opens a merge
session that the other members fetch from, runs `node.merging.runner`, applies the outer step
when the run has one, loads the merged parameters into its engine (its own AdamW state stays;
the outer momentum is kept in the optimizer state as `outer_momentum`), saves the post-merge
checkpoint and answers `MergeReport`. A repeated MergeStart for the same merge gets the same
report; disputes go to the orchestrator and every admitted validator.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from functools import partial

import torch
from safetensors.torch import load as load_safetensors

from node.blob_server import fetch_blob
from node.merging.runner import MergeRunner
from node.merging.session import MergeBook, MergeSession, Served
from node.mining.single_flight import run_shared
from node.mining.state import MinerState, StageHolding
from node.mining.worker import ComputeWorker
from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.merge_messages import MergeDispute, MergeReport, MergeStart
from p2p.messages import Message
from p2p.refusals import Reason, Refused
from store import BlobStore, StoreError
from training.merge.layout import Layout
from training.merge.plan import make_plan
from training.merge.quantize import FORMATS, Format, decode, encode
from training.merge.reduce import Reduction, outer_step
from training.merge.state import (
    install_merged,
    merge_tensors,
    outer_momentum,
    seed_params,
    start_tensors,
)

log = logging.getLogger(__name__)
ROBUST = ("mean", "trimmed", "clip")


class MergeHandler:
    def __init__(
        self,
        state: MinerState,
        endpoint: Endpoint,
        worker: ComputeWorker,
        blobs: BlobStore,
        *,
        checkpoint_retention_s: float,
        corrupt: bool = False,
    ) -> None:
        self._state = state
        self._ep = endpoint
        self._worker = worker
        self._blobs = blobs
        self._keep_s = checkpoint_retention_s
        self._corrupt = corrupt
        self.book = MergeBook(endpoint)
        self.counters: Counter[str] = Counter()
        self._reports: dict[tuple[int, int], MergeReport] = {}
        self._running: dict[tuple[int, int], asyncio.Future[MergeReport]] = {}
        self._residual: dict[int, torch.Tensor] = {}
        endpoint.register(MergeStart, self.on_start)

    async def on_start(self, msg: MergeStart, peer: PeerSession) -> Message:
        state = self._state
        if peer.peer_id != state.orchestrator:
            raise Refused(Reason.NOT_ALLOWED, "only the assigning orchestrator starts merges")
        holding = state.holding
        if holding is None or holding.stage != msg.stage:
            raise Refused(Reason.NOT_ASSIGNED, f"stage {msg.stage} is not held here")
        key = (msg.window, msg.stage)
        if key in self._reports:
            return self._reports[key]
        if key in self._running:
            return await asyncio.shield(self._running[key])
        closed = state.last_report
        if closed is None or closed.window != msg.window:
            raise Refused(Reason.WRONG_WINDOW, f"window {msg.window} was not closed here")
        _check(msg, self._ep.peer_id)
        future: asyncio.Future[MergeReport] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            report = await run_shared(future, self._merge(msg, holding, peer.peer_id))
        finally:
            del self._running[key]
        self._reports = {k: v for k, v in self._reports.items() if k[0] > msg.window - 4}
        self._reports[key] = report
        return report

    async def _merge(self, msg: MergeStart, holding: StageHolding, orch: str) -> MergeReport:
        fmt: Format = msg.exchange  # type: ignore[assignment]
        outer = msg.outer_lr > 0
        start_bytes = None
        if (fmt != "fp32" or outer) and msg.start:
            start_bytes = await self._checkpoint(msg.start, orch)
        moments = msg.moments and not outer  # DiLoCo keeps each member's inner optimizer
        layout, local, start, momentum = await self._worker.submit(
            partial(_vectors, holding, start_bytes, fmt != "fp32" or outer, moments)
        )
        plan = make_plan(self._state.run_id, msg.window, msg.stage, msg.members, layout.size)
        bounds = [(p.start, p.end) for p in plan.partitions]
        contributions = self._contributions(fmt, msg.stage, local, start, bounds)
        session = MergeSession(
            plan=plan,
            me=self._ep.peer_id,
            fmt=fmt,
            weights=dict(zip(msg.members, msg.weights, strict=True)),
            how=Reduction(robust=msg.robust),  # type: ignore[arg-type]
            contributions=contributions,
            start=start,
            corrupt=self._corrupt,
        )
        self.book.add(session)
        runner = MergeRunner(self._ep, session, deadline_s=msg.deadline_s, report=self._dispute)
        try:
            result = await runner.run()
        except TimeoutError as exc:
            self.counters["merges_failed"] += 1
            raise Refused(Reason.INTERNAL, f"merge did not complete: {exc}") from None
        params = result.values
        if outer:
            assert start is not None and momentum is not None
            params, momentum = outer_step(
                start, params, momentum, lr=msg.outer_lr, mu=msg.outer_momentum
            )
        data = await self._worker.submit(
            partial(install_merged, holding.engine, layout, params, momentum)
        )
        try:
            digest = await asyncio.to_thread(self._blobs.put, data, retain_s=self._keep_s)
        except StoreError as exc:
            raise Refused(Reason.INTERNAL, f"merged checkpoint not stored: {exc}") from None
        if self._state.holding is holding:
            holding.weights = digest
        self.counters["merges"] += 1
        self.counters["disputes"] += len(result.disputes)
        log.info(
            "merged stage %s window %s with %d members: %s (%d reassigned, %d disputes)",
            msg.stage, msg.window, len(result.contributors), digest[:12], result.reassigned,
            len(result.disputes),
        )  # fmt: skip
        return MergeReport(
            window=msg.window,
            stage=msg.stage,
            digest=digest,
            merged_version=holding.engine.weights_digest(),
            contributors=result.contributors,
            disputes=len(result.disputes),
            reassigned=result.reassigned,
            bytes_sent=session.counters["bytes_sent"],
            bytes_received=session.counters["bytes_received"],
        )

    def _contributions(
        self,
        fmt: Format,
        stage: int,
        local: torch.Tensor,
        start: torch.Tensor | None,
        bounds: list[tuple[int, int]],
    ) -> list[Served]:
        me = [self._ep.peer_id]
        if fmt == "fp32":
            return [Served(encode(fmt, local[a:b]), me) for a, b in bounds]
        assert start is not None
        x = local - start
        residual = self._residual.get(stage)
        if residual is not None and residual.shape == x.shape:
            x = x + residual
        parts = [encode(fmt, x[a:b]) for a, b in bounds]
        sent = torch.cat([decode(fmt, d, b - a) for d, (a, b) in zip(parts, bounds, strict=True)])
        self._residual[stage] = x - sent
        return [Served(d, me) for d in parts]

    async def _checkpoint(self, digest: str, source: str) -> bytes:
        data = self._blobs.get(digest)
        if data is None:
            try:
                data = await fetch_blob(self._ep, source, digest, timeout=60.0)
            except (P2PError, TimeoutError, OSError) as exc:
                raise Refused(Reason.NOT_FOUND, f"start checkpoint {digest}: {exc}") from None
        return data

    async def _dispute(self, dispute: MergeDispute) -> None:
        targets = {self._state.orchestrator} | {
            p for p, s in self._ep.sessions.items() if "validator" in s.roles
        }
        for peer in sorted(t for t in targets if t):
            try:
                await self._ep.request(peer, dispute, timeout=10.0)
            except (P2PError, TimeoutError) as exc:
                log.info("merge dispute not delivered to %s: %s", peer, exc)


def _check(msg: MergeStart, me: str) -> None:
    if me not in msg.members or len(set(msg.members)) != len(msg.members):
        raise Refused(Reason.MALFORMED, "this miner is not among the merge's distinct members")
    if len(msg.weights) != len(msg.members):
        raise Refused(Reason.MALFORMED, "one weight per member")
    if not all(math.isfinite(w) and w >= 0 for w in msg.weights) or not sum(msg.weights) > 0:
        raise Refused(Reason.MALFORMED, "weights must be finite, >= 0, not all 0")
    if msg.exchange not in FORMATS or msg.robust not in ROBUST:
        raise Refused(Reason.MALFORMED, f"exchange {msg.exchange!r} / robust {msg.robust!r}")
    if not (msg.deadline_s > 0 and msg.outer_lr >= 0 and 0 <= msg.outer_momentum < 1):
        raise Refused(Reason.MALFORMED, "deadline > 0, outer_lr >= 0, 0 <= outer_momentum < 1")


def _vectors(
    holding: StageHolding, start_bytes: bytes | None, need_start: bool, moments: bool
) -> tuple[Layout, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(layout, local vector, window-start vector, outer momentum) on the worker; the vectors
    hold the parameters, and with `moments` the AdamW moments."""
    local_tensors = merge_tensors(holding.engine, moments=moments)
    layout = Layout.of_tensors(local_tensors)
    local = layout.flatten(local_tensors)
    if not need_start:
        return layout, local, None, None
    if start_bytes is None:
        loaded = seed_params(holding.spec, holding.stage)
        momentum = torch.zeros(layout.size)
    else:
        loaded = load_safetensors(start_bytes)
        momentum = outer_momentum(layout, loaded)
    return layout, local, layout.flatten(start_tensors(layout, loaded)), momentum
