"""Closing a window: collect every miner's checkpoint, merge each stage, record the window.

Every active miner answers `WindowClose` with the digest of its checkpoint; the orchestrator
fetches and keeps those blobs. A stage with two or more reporting miners then merges
(`node.run_control.merger`): its members continue from their post-merge checkpoints. The window
record keeps, per stage, the checkpoint the next window starts from (`weights`: a miner that
joins later loads its stage from it, the evaluation reads it) and the merged version
(`versions`), and per miner its window-end checkpoint (`premerge`: what auditors compare their
replay with) and the checkpoint it starts the next window from (`members`). A stage whose miners
all fail to answer keeps its previous checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from node.blob_server import keep_blob
from node.orchestration import MinerState, Orchestrator, RunState
from node.run_control.history import Assignment, RunHistory
from node.run_control.merger import StageMerger
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.messages import WeightsReport, WindowClose
from store import BlobStore, StoreError
from verification.checkpoints import checkpoint_digest

log = logging.getLogger(__name__)
KEEP_CHECKPOINT_S = 7 * 24 * 3600.0
"""Retention of collected checkpoints without a merger's setting; the newest window's
checkpoints are pinned until a newer window replaces them, so GC never takes what a miner or a
late joiner is assigned."""


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
        merger: StageMerger | None = None,
    ) -> None:
        self._orch = orchestrator
        self._endpoint = endpoint
        self._history = history
        self._blobs = blobs
        self._tokens_per_batch = tokens_per_batch
        self._timeout = timeout_s
        self._merger = merger
        self._keep_s = merger.config.checkpoint_retention_s if merger else KEEP_CHECKPOINT_S
        self.counters: Counter[str] = Counter()

    async def close(self, state: RunState) -> RunState:
        """Collects `state.window`'s checkpoints (in merge), merges, records it, opens the next."""
        window = state.window
        holders = sorted(
            (m.stage, m.peer_id)
            for m in self._orch.miners()
            if m.state is MinerState.ACTIVE and m.stage is not None
        )
        latest, before = self._history.starting_points()
        start = {str(s): d for s, d in latest.items()}
        weights = dict(start)
        reports = await asyncio.gather(
            *(self._collect(window, stage, peer) for stage, peer in holders)
        )
        by_stage: dict[int, list[tuple[str, str]]] = {}
        premerge: dict[str, str] = {}
        for stage, peer, digest in reports:
            if digest:
                by_stage.setdefault(stage, []).append((peer, digest))
                premerge[peer] = digest
            else:  # re-assigned: the miner rebuilds from the checkpoint recorded for its stage
                self._history.set_assignment(peer, None)
        work = self._orch.work_counts(window)
        merges = await asyncio.gather(
            *(
                self._merge(window, stage, reported, work, start.get(str(stage), ""))
                for stage, reported in sorted(by_stage.items())
            )
        )
        members: dict[str, list[Any]] = {}
        versions: dict[str, str] = {}
        for stage, kept, version in merges:
            for peer, digest in kept.items():
                members[peer] = [stage, digest]
                self._history.set_assignment(peer, Assignment(stage, digest))
            if kept:
                weights[str(stage)] = kept[min(kept)]
                versions[str(stage)] = version
        for peer in set(premerge) - set(members):
            self._history.set_assignment(peer, None)
        previous = set(start.values()) | {d for _, d in before.values()}
        self._pin_newest(previous, set(weights.values()) | {d for _, d in members.values()})
        merge_at = state.merge_started_at or time.time()
        self._history.close_window(
            window,
            tokens=state.completed * self._tokens_per_batch,
            seconds=max(merge_at - state.window_started_at, 1e-9),
            completed=state.completed,
            dropped=state.dropped,
            weights=weights,
            versions=versions,
            premerge=premerge,
            members=members,
            work=work,
        )
        return self._orch.finish_merge()

    def _pin_newest(self, previous: set[str], newest: set[str]) -> None:
        """Pin what the next window starts from; let the window before it expire."""
        try:
            for digest in previous - newest - {""}:
                self._blobs.unpin(digest)
            for digest in newest - {""}:
                self._blobs.pin(digest)
        except (StoreError, ValueError) as exc:
            self.counters["pin_failed"] += 1
            log.warning("could not pin the newest checkpoints: %s", exc)

    async def _merge(
        self,
        window: int,
        stage: int,
        reported: list[tuple[str, str]],
        work: dict[str, dict[str, int]],
        start: str,
    ) -> tuple[int, dict[str, str], str]:
        """(stage, member -> checkpoint it goes on from, merged version) for one stage."""
        if len(reported) < 2 or self._merger is None:
            peer, digest = reported[0]
            for other, _ in reported[1:]:  # no merge: only the first miner's weights go on
                self._history.set_assignment(other, None)
            data = self._blobs.get(digest)
            version = "" if data is None else await asyncio.to_thread(checkpoint_digest, data)
            return stage, {peer: digest}, version
        members = {p: float(work.get(p, {}).get("backward", 0)) for p, _ in reported}
        result = await self._merger.merge(window, stage, members, start)
        return stage, result.members, result.version

    async def _collect(self, window: int, stage: int, peer: str) -> tuple[int, str, str]:
        try:
            reply = await self._endpoint.request(
                peer, WindowClose(window=window), timeout=self._timeout
            )
            if not isinstance(reply, WeightsReport) or reply.stage != stage:
                raise P2PError(f"answered WindowClose with {reply!r}")
            await keep_blob(
                self._endpoint, self._blobs, peer, reply.digest,
                timeout=self._timeout, retain_s=self._keep_s,
            )  # fmt: skip
            self.counters["checkpoints"] += 1
            return stage, peer, reply.digest
        except (P2PError, TimeoutError, ValueError, StoreError) as exc:
            self.counters["close_failed"] += 1
            log.warning("stage %s (%s) did not close window %s: %s", stage, peer, window, exc)
            return stage, peer, ""
