"""Closing a window: collect each stage's checkpoint, record the window, open the next one.

Every stage's miner answers `WindowClose` with the digest of its checkpoint; the orchestrator
fetches and keeps those blobs (a miner that joins later loads its stage from them, and the
evaluation reads them). A stage whose miner does not answer keeps its previous checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from node.blob_server import fetch_blob
from node.orchestration import MinerState, Orchestrator, RunState
from node.run_control.history import Assignment, RunHistory
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.messages import WeightsReport, WindowClose
from store import BlobStore

log = logging.getLogger(__name__)
KEEP_CHECKPOINT_S = 30 * 24 * 3600.0


class WindowCloser:
    def __init__(
        self,
        orchestrator: Orchestrator,
        endpoint: Endpoint,
        history: RunHistory,
        blobs: BlobStore,
        *,
        tokens_per_batch: int,
        timeout_s: float,
    ) -> None:
        self._orch = orchestrator
        self._endpoint = endpoint
        self._history = history
        self._blobs = blobs
        self._tokens_per_batch = tokens_per_batch
        self._timeout = timeout_s
        self.counters: Counter[str] = Counter()

    async def close(self, state: RunState) -> RunState:
        """Collects checkpoints of `state.window` (in merge), records it, starts the next."""
        holders = {
            m.stage: m.peer_id
            for m in self._orch.miners()
            if m.state is MinerState.ACTIVE and m.stage is not None
        }
        weights = {str(s): d for s, d in self._history.latest_weights().items()}
        reports = await asyncio.gather(
            *(self._collect(state.window, stage, peer) for stage, peer in holders.items())
        )
        for stage, peer, digest in reports:
            if digest:
                weights[str(stage)] = digest
                self._history.set_assignment(peer, Assignment(stage, digest))
            else:  # re-assigned: the miner rebuilds from the checkpoint recorded for its stage
                self._history.set_assignment(peer, None)
        merge_at = state.merge_started_at or time.time()
        self._history.close_window(
            state.window,
            tokens=state.completed * self._tokens_per_batch,
            seconds=max(merge_at - state.window_started_at, 1e-9),
            completed=state.completed,
            dropped=state.dropped,
            weights=weights,
            work=self._orch.work_counts(state.window),
        )
        return self._orch.finish_merge()

    async def _collect(self, window: int, stage: int, peer: str) -> tuple[int, str, str]:
        try:
            reply = await self._endpoint.request(
                peer, WindowClose(window=window), timeout=self._timeout
            )
            if not isinstance(reply, WeightsReport) or reply.stage != stage:
                raise P2PError(f"answered WindowClose with {reply!r}")
            if not self._blobs.has(reply.digest):
                data = await fetch_blob(self._endpoint, peer, reply.digest, timeout=self._timeout)
                self._blobs.put(data, retain_s=KEEP_CHECKPOINT_S)
            self.counters["checkpoints"] += 1
            return stage, peer, reply.digest
        except (P2PError, TimeoutError, ValueError) as exc:
            self.counters["close_failed"] += 1
            log.warning("stage %s (%s) did not close window %s: %s", stage, peer, window, exc)
            return stage, peer, ""
