"""Miner role: holds the stage its orchestrator assigns and does that stage's pipeline compute.

The parts live in `node.mining`: the Assign handler builds the stage, the pipeline handlers take
Work / activations / gradients, one compute thread runs them in order, receipts go to the
orchestrator in batches, inputs and outputs are retained for auditors, and WindowClose saves and
reports the stage's checkpoint. This module holds the configuration and composes the parts as
child services.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.mining import faults
from node.mining.assignment import Assigner
from node.mining.closing import WindowCloser
from node.mining.handlers import Handlers
from node.mining.merge_handler import MergeHandler
from node.mining.pipeline import Pipeline, PipelineLimits
from node.mining.receipts import ReceiptSender
from node.mining.retention import Retention
from node.mining.state import STANDBY, MinerState
from node.mining.time_split import breakdown
from node.mining.worker import ComputeWorker
from node.roles.base import RoleComponent, RoleContext
from node.service import sleep_forever
from store import BlobStore

_DEVICE = re.compile(r"(cpu|mps|(cuda|xpu)(:\d+)?)")
MiB = 1024 * 1024


@dataclass(kw_only=True, slots=True)
class MinerConfig:
    capacity: float = 1.0
    """Declared capacity (tokens per second of its stage, or any unit shared by the run's
    miners): the orchestrator assigns stages weighted by it, and validators pay a miner that
    delivers less than it declares (compared with its stage-mates) less (docs/pay.md)."""
    max_inflight: int = 8
    """Batches open on this stage at once (forwarded or queued, awaiting backward); more are
    refused `over_capacity`."""
    threads: int = 0
    """torch intra-op threads of the compute thread (0: torch's default). Auditors replaying
    this miner must use the same count for a bitwise replay."""
    device: str | None = None
    """torch device of the stage ("cpu", "cuda", "cuda:1", …; None: CUDA when present)."""
    data_cache: str = ""
    """Directory of the built corpus and tokenizer; empty = `<home>/data`."""
    receipt_flush_s: float = 0.2
    receipt_batch: int = 32
    receipt_queue: int = 10_000
    """Receipts kept while the orchestrator is unreachable; the oldest are dropped beyond."""
    retain_tensors: bool = True
    """Keep every unit's input and output bytes for auditors."""
    retention_s: float = 3600.0
    retention_max_mib: int = 512
    """Cap on the blob store's size; beyond it the blobs nearest expiry go first (0: only the
    store's `blob_share` of its map, which also caps this)."""
    checkpoint_retention_s: float = 86400.0
    """How long window checkpoints (and loaded weights) are kept in the blob store."""
    gc_interval_s: float = 60.0
    send_timeout_s: float = 10.0
    """Deadline for delivering an activation or gradient (with retries) and a receipt batch."""
    batch_timeout_s: float = 300.0
    """A forwarded batch whose gradient has not come by then is forgotten."""
    fault: str = ""
    """Test and devnet only: cheat as `node.mining.faults` KIND ("" = honest)."""

    def __post_init__(self) -> None:
        if not self.capacity > 0:
            raise ValueError(f"miner.capacity must be > 0, got {self.capacity}")
        for name in ("max_inflight", "receipt_batch", "receipt_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"miner.{name} must be an integer >= 1, got {value!r}")
        if self.threads < 0 or self.retention_max_mib < 0:
            raise ValueError("miner.threads and miner.retention_max_mib must be >= 0")
        if self.receipt_batch > 100:
            raise ValueError("miner.receipt_batch must be <= 100 (receipts share one head)")
        try:
            faults.check(self.fault)
        except ValueError as exc:
            raise ValueError(f"miner.fault: {exc}") from None
        if self.device is not None and not _DEVICE.fullmatch(self.device):
            raise ValueError(f"miner.device {self.device!r} is not a torch device name")
        for name in (
            "receipt_flush_s",
            "retention_s",
            "checkpoint_retention_s",
            "gc_interval_s",
            "send_timeout_s",
            "batch_timeout_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"miner.{name} must be a positive number of seconds")


class MinerComponent(RoleComponent[MinerConfig]):
    name = "miner"

    def __init__(self, config: MinerConfig, ctx: RoleContext) -> None:
        super().__init__(config, ctx)
        cfg = config
        state = self.state = MinerState(peer_id=ctx.endpoint.peer_id, run_id=ctx.run_id)
        blobs = BlobStore(ctx.store)
        scratch = ctx.home / "mining"
        self.worker = ComputeWorker(threads=cfg.threads, max_queue=4 * cfg.max_inflight + 16)
        self.receipts = ReceiptSender(
            ctx.endpoint,
            lambda: state.orchestrator,
            state.counters,
            flush_s=cfg.receipt_flush_s,
            batch=cfg.receipt_batch,
            max_queued=cfg.receipt_queue,
            timeout_s=cfg.send_timeout_s,
        )
        self.retention = (
            Retention(
                ctx.store,
                ctx.run_id,
                state.counters,
                state.seconds,
                retention_s=cfg.retention_s,
                max_bytes=min(
                    cfg.retention_max_mib * MiB or ctx.store.config.blob_budget_bytes,
                    ctx.store.config.blob_budget_bytes,
                ),
                gc_interval_s=cfg.gc_interval_s,
            )
            if cfg.retain_tensors
            else None
        )
        self.assigner = Assigner(
            state,
            ctx.endpoint,
            blobs,
            data_cache=Path(cfg.data_cache) if cfg.data_cache else ctx.home / "data",
            scratch=scratch,
            device=cfg.device,
            cache_size=2 * cfg.max_inflight,  # slack: a failed unit's entry until forgotten
            checkpoint_retention_s=cfg.checkpoint_retention_s,
        )
        self.pipeline = Pipeline(
            state,
            ctx.endpoint,
            self.worker,
            self.receipts,
            self.retention,
            PipelineLimits(
                send_timeout_s=cfg.send_timeout_s,
                batch_timeout_s=cfg.batch_timeout_s,
            ),
        )
        self.pipeline.behaviour = faults.make(cfg.fault)
        self.handlers = Handlers(state, ctx.endpoint, self.pipeline, max_inflight=cfg.max_inflight)
        self.closer = WindowCloser(
            state,
            ctx.endpoint,
            self.worker,
            blobs,
            self.assigner.rollback,
            checkpoint_retention_s=cfg.checkpoint_retention_s,
            flush=self._flush_evidence,
        )
        self.merges = MergeHandler(
            state,
            ctx.endpoint,
            self.worker,
            blobs,
            checkpoint_retention_s=cfg.checkpoint_retention_s,
            corrupt=cfg.fault == "bad-merge",
        )
        self._export_metrics()

    async def _flush_evidence(self) -> None:
        """Receipts to the orchestrator, retained tensors to the store (at a window's close)."""
        if self.retention is not None:
            await self.retention.flush()
        await self.receipts.flush()

    async def run(self) -> None:
        children = [self.worker, self.receipts, self.pipeline]
        if self.retention is not None:
            children.append(self.retention)
        for child in children:
            self.manager.run_child_service(child)
        try:
            await sleep_forever()
        finally:
            await self.closer.close()

    def _gauges(self) -> dict[str, float]:
        state, holding = self.state, self.state.holding
        engine = holding.engine if holding is not None else None
        values: dict[str, float] = {
            "stage": -1 if holding is None else holding.stage,
            "window": state.window,
            "inflight": len(state.batches),
            "compute_queue": self.worker.queued,
            "receipts_queued": self.receipts.queued,
            "optimizer_steps": engine.weights_version if engine else 0,
            "backward_passes": engine.backward_passes if engine else 0,
            "compute_seconds": self.worker.seconds,
            **{f"{part}_seconds": s for part, s in state.seconds.items()},
        }
        if state.last_loss is not None:
            values["last_loss"] = state.last_loss
        return values

    def _export_metrics(self) -> None:
        metrics = self.ctx.metrics
        metrics.watch_counters(
            "tessera_miner_events",
            "Miner events: units of work, sends, receipts, retention, assignments",
            "event",
            lambda: self.state.counters,
        )
        metrics.watch_gauges("tessera_miner", "Miner state and time spent", "field", self._gauges)
        metrics.watch_counters(
            "tessera_merge_events",
            "Stage merges: merges, disputes, fetches, bytes",
            "event",
            lambda: self.merges.counters + self.merges.book.counters,
        )

    def _time_split(self) -> dict[str, Any]:
        first = self.worker.first_job_at
        state, seconds = self.state, self.ctx.endpoint.seconds
        concurrent = {
            "seal": seconds["seal"],
            "open": seconds["open"],
            "sending": state.seconds["send"],
            "retention": state.seconds["retention"],
            "save": state.seconds["save"],
        }
        return breakdown(
            wall_s=0.0 if first is None else self.worker.last_job_end - first,
            job_s=self.worker.seconds,
            job_parts=state.job_seconds,
            concurrent=concurrent,
        )

    def status(self) -> dict[str, Any]:
        state, holding = self.state, self.state.holding
        engine = holding.engine if holding is not None else None
        return {
            "capacity": self.config.capacity,
            **({"fault": self.config.fault} if self.config.fault else {}),
            "hotkey": self.ctx.binding_hotkey,
            "stage": None if holding is None else holding.stage,
            "standby": state.assigned is not None and state.assigned[1] == STANDBY,
            "model": holding.spec.model if holding is not None else None,
            "orchestrator": state.orchestrator,
            "window": state.window,
            "weights": holding.weights if holding is not None else None,
            "weights_version": state.last_weights_version,
            "optimizer_steps": engine.weights_version if engine else 0,
            "backward_passes": engine.backward_passes if engine else 0,
            "forward": state.counters["forward"],
            "backward": state.counters["backward"],
            "inflight": len(state.batches),
            "max_inflight": self.config.max_inflight,
            "compute_queue": self.worker.queued,
            "receipts_queued": self.receipts.queued,
            "last_loss": state.last_loss,
            "seconds": {"compute": self.worker.seconds, **state.seconds},
            "time": self._time_split(),
            "events": dict(state.counters),
            "refusals": dict(self.ctx.endpoint.refusals.counts),
        }
