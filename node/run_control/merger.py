"""The orchestrator's side of the stage merge: start it, collect the members' reports, publish
the merged version.

After a window's checkpoints are collected, every stage with two or more reporting members
merges: each gets a `MergeStart` with the members, their weights (the backward receipts the
ledger accepted from each in the window: the work the merge is weighted by), the checkpoint the
window started from and the exchange settings (`[orchestrator.merge]`). The version most members
report is the stage's merged version; those members' post-merge checkpoints are fetched and kept
(their next window starts there, and auditors replay from them). A member that reported another
version, or none, is assigned again and rebuilds from a checkpoint of the merged version.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from node.blob_server import keep_blob
from node.run_control.merge_deadline import MergeDeadline
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.merge_messages import MergeReport, MergeStart
from store import BlobStore, StoreError
from training.merge.quantize import FORMATS

log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class MergeConfig:
    exchange: str = "fp32"
    """What members exchange: fp32 (exact), bf16 or int8 (lossy, with error feedback)."""
    robust: str = "mean"
    """mean (weighted by work), trimmed (trimmed mean) or clip (centered clipping)."""
    outer_lr: float = 0.0
    """DiLoCo outer learning rate (Nesterov); 0 = the merged weights are the average itself."""
    outer_momentum: float = 0.0
    moments: bool = True
    """Average the members' AdamW moments with their parameters (plain averages: with an outer
    step each member keeps its own); docs/decisions.md, Stage merge."""
    deadline_s: float = 60.0
    """The longest members may have for one merge (owners gather until 40 % of it); the
    deadline sent is `deadline_k` times the merges' typical duration, at least `min_deadline_s`
    (`node.run_control.merge_deadline`)."""
    deadline_k: float = 10.0
    min_deadline_s: float = 5.0
    checkpoint_retention_s: float = 7 * 24 * 3600.0
    """How long the orchestrator keeps each miner's checkpoints (audit evidence); the newest
    window's are kept until a newer window replaces them."""

    def __post_init__(self) -> None:
        if self.exchange not in FORMATS:
            raise ValueError(f"orchestrator.merge.exchange must be one of {', '.join(FORMATS)}")
        if self.robust not in ("mean", "trimmed", "clip"):
            raise ValueError("orchestrator.merge.robust must be mean, trimmed or clip")
        if not (math.isfinite(self.outer_lr) and self.outer_lr >= 0):
            raise ValueError("orchestrator.merge.outer_lr must be >= 0")
        if not 0 <= self.outer_momentum < 1 or not self.deadline_s > 0:
            raise ValueError("orchestrator.merge.outer_momentum in [0, 1), deadline_s > 0")
        if not 0 < self.min_deadline_s <= self.deadline_s or not self.deadline_k > 0:
            raise ValueError("orchestrator.merge: need 0 < min_deadline_s <= deadline_s, k > 0")
        if not self.checkpoint_retention_s > 0:
            raise ValueError("orchestrator.merge.checkpoint_retention_s must be > 0")


@dataclass(slots=True)
class StageMerge:
    version: str = ""
    members: dict[str, str] = field(default_factory=dict)
    """Members that reported the merged version -> their post-merge checkpoint."""
    reports: dict[str, MergeReport] = field(default_factory=dict)


class StageMerger:
    def __init__(self, endpoint: Endpoint, blobs: BlobStore, config: MergeConfig) -> None:
        self._ep = endpoint
        self._blobs = blobs
        self.config = config
        self.counters: Counter[str] = Counter()
        self.deadline = MergeDeadline(
            max_s=config.deadline_s, min_s=config.min_deadline_s, k=config.deadline_k
        )

    async def merge(
        self, window: int, stage: int, members: dict[str, float], start: str
    ) -> StageMerge:
        peers = sorted(members)
        weights = [members[p] for p in peers]
        if not sum(weights) > 0:
            weights = [1.0] * len(peers)
        cfg = self.config
        msg = MergeStart(
            window=window,
            stage=stage,
            members=peers,
            weights=weights,
            start=start,
            exchange=cfg.exchange,
            robust=cfg.robust,
            outer_lr=cfg.outer_lr,
            outer_momentum=cfg.outer_momentum,
            deadline_s=(deadline := self.deadline.seconds()),
            moments=cfg.moments,
        )
        started = time.monotonic()
        replies = await asyncio.gather(
            *(self._ep.request(p, msg, timeout=deadline + 30.0) for p in peers),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        out = StageMerge()
        for peer, reply in zip(peers, replies, strict=True):
            if isinstance(reply, MergeReport) and (reply.window, reply.stage) == (window, stage):
                out.reports[peer] = reply
            else:
                self.counters["member_failed"] += 1
                log.warning("merge of stage %s: %s answered %r", stage, peer, reply)
        self.deadline.observe(elapsed, members=len(peers), reported=len(out.reports))
        votes = Counter(r.merged_version for r in out.reports.values())
        if not votes:
            self.counters["merge_failed"] += 1
            return out
        out.version = min(votes, key=lambda v: (-votes[v], v))
        agreeing = [p for p, r in out.reports.items() if r.merged_version == out.version]
        self.counters["member_disagreed"] += len(out.reports) - len(agreeing)
        fetched = await asyncio.gather(*(self._keep(p, out.reports[p].digest) for p in agreeing))
        out.members = {p: d for p, d, ok in fetched if ok}
        self.counters["merges"] += 1
        self.counters["disputes"] += sum(r.disputes for r in out.reports.values())
        self.counters["partitions_reassigned"] += sum(r.reassigned for r in out.reports.values())
        log.info(
            "stage %s window %s merged by %d of %d members: version %s",
            stage, window, len(out.members), len(peers), out.version[:12],
        )  # fmt: skip
        return out

    async def _keep(self, peer: str, digest: str) -> tuple[str, str, bool]:
        try:
            await keep_blob(
                self._ep, self._blobs, peer, digest,
                timeout=self.config.deadline_s, retain_s=self.config.checkpoint_retention_s,
            )  # fmt: skip
        except (P2PError, TimeoutError, ValueError, OSError, StoreError) as exc:
            self.counters["checkpoint_not_fetched"] += 1
            log.warning("post-merge checkpoint %s of %s not fetched: %s", digest, peer, exc)
            return peer, digest, False
        return peer, digest, True
