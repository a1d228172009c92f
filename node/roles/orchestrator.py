"""Orchestrator role: publishes the run, assigns stages, routes batches, closes windows.

It drives the orchestration core (`node.orchestration`) from a tick loop: keep the registry in
step with admitted miners, assign stages, send routes while every stage is ready, collect the
stage checkpoints when a window's batches are done, and evaluate each closed window.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from node.daemon_thread import in_daemon_thread
from node.merging.disputes import DisputeLog
from node.orchestration import (
    AssignmentConfig,
    OrchestrationConfig,
    Orchestrator,
    Phase,
    WindowConfig,
)
from node.roles.base import RoleComponent, RoleContext
from node.roles.orchestrator_config import OrchestratorConfig
from node.run_control.audit_desk import AuditDesk
from node.run_control.closer import WindowCloser
from node.run_control.evaluator import evaluate_checkpoints
from node.run_control.history import RunHistory
from node.run_control.membership import Membership
from node.run_control.merger import StageMerger
from node.run_control.progress import run_progress, total_work, window_summary
from node.run_control.series import loss_curve, miner_rates, miner_versions
from node.run_control.work import ReceiptIntake, WorkDispatcher
from p2p.messages import ReceiptBatch
from store import BlobStore, MapFullError, StoreError
from training.data.build import build_dataset
from training.data.dataset import Dataset

__all__ = ["OrchestratorComponent", "OrchestratorConfig"]
log = logging.getLogger(__name__)
GC_INTERVAL_S = 60.0


class OrchestratorComponent(RoleComponent[OrchestratorConfig]):
    name = "orchestrator"

    def __init__(self, config: OrchestratorConfig, ctx: RoleContext) -> None:
        super().__init__(config, ctx)
        self.spec = config.run
        self.history = RunHistory(ctx.store, ctx.run_id)
        self.blobs = BlobStore(ctx.store)
        self.core = Orchestrator(ctx.store, self._core_config())
        self.intake = ReceiptIntake(self.core, self.history, ctx.run_id)
        self.dispatcher = WorkDispatcher(ctx.endpoint, timeout_s=config.leases.min_s)
        self._dataset: Dataset | None = None
        self._membership: Membership | None = None
        self._closer: WindowCloser | None = None
        self._evaluating: int | None = None
        self._eval_task: asyncio.Task[None] | None = None
        self._next_gc = 0.0
        self._gc_counters: Counter[str] = Counter()
        self._held = config.wait_for_validators > 0
        """Window 0 waits for `wait_for_validators` followers (released once, for this run)."""
        ctx.endpoint.register(ReceiptBatch, self.intake.on_batch)
        self.audits = AuditDesk(
            self.core,
            self.history,
            ctx.store,
            ctx.run_id,
            batches_per_window=self.spec.batches_per_window,
        )
        self.audits.register(ctx.endpoint)
        self.merger = StageMerger(ctx.endpoint, self.blobs, config.merge)
        self.disputes = DisputeLog(ctx.store, ctx.run_id)
        self.disputes.register(ctx.endpoint)
        self._export_metrics()

    def _core_config(self) -> OrchestrationConfig:
        spec, cfg = self.spec, self.config
        return OrchestrationConfig(
            run_id=self.ctx.run_id,
            assignment=AssignmentConfig(
                n_stages=spec.n_stages, max_miners_per_stage=cfg.max_miners_per_stage or None
            ),
            registry=cfg.registry,
            leases=cfg.leases,
            window=WindowConfig(
                batches_per_window=spec.batches_per_window,
                max_in_flight=cfg.in_flight,
                lockstep=cfg.lockstep,
                group_size=spec.accumulate if cfg.lockstep else 1,
            ),
        )

    async def run(self) -> None:
        cache = Path(self.config.data_cache) if self.config.data_cache else self.ctx.home / "data"
        dataset = await in_daemon_thread(
            build_dataset, self.spec.data_config(cache), name="dataset"
        )
        if self.spec.data_digest and self.spec.data_digest != dataset.digest:
            raise ValueError(
                f"orchestrator.run.data_digest {self.spec.data_digest} does not match the "
                f"dataset built under {cache} ({dataset.digest})"
            )
        unknown = sorted(set(self.spec.mixture) - set(dataset.domains))
        if unknown:
            raise ValueError(
                f"orchestrator.run.mixture names {unknown}; the dataset has {dataset.domains}"
            )
        self._dataset = dataset
        self.spec = dataclasses.replace(self.spec, data_digest=dataset.digest)
        record = self.history.pin_spec(self.spec.to_record())
        self.audits.spec_record = record
        self._membership = Membership(
            self.core,
            self.ctx.endpoint,
            self.history,
            record,
            lambda: self.core.run_state().window,
            assign_timeout_s=self.config.assign_timeout_s,
        )
        self._closer = WindowCloser(
            self.core,
            self.ctx.endpoint,
            self.history,
            self.blobs,
            tokens_per_batch=self.spec.tokens_per_batch,
            timeout_s=self.config.close_timeout_s,
            merger=self.merger,
        )
        log.info("run %s: %s", self.ctx.run_id, record)
        try:
            self._resume_eval()
            while True:
                try:
                    await self._tick()
                except MapFullError:  # refuse what needs room (store_full), free some, go on
                    self._gc_counters["store_full"] += 1
                    log.warning("store full; evicting old checkpoints beyond the blob budget")
                    await self._collect_garbage(now_please=True)
                await self._next_tick()
        finally:
            await self._membership.close()
            await self.dispatcher.close()
            if self._eval_task is not None:
                self._eval_task.cancel()

    async def _next_tick(self) -> None:
        """Sleeps `tick_s`, or less when a route finished (its batch's successors may start)."""
        done = self.intake.routes_done
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.tick_s):
                await done.wait()
        done.clear()

    async def _tick(self) -> None:
        assert self._membership is not None and self._closer is not None
        members = self._membership
        members.sync()
        while self.dispatcher.unassigned:
            members.forget(self.dispatcher.unassigned.popleft())
        while self.dispatcher.refused:
            self.core.abandon(self.dispatcher.refused.popleft())
        members.assign_pending(time.time())
        await self._collect_garbage()
        state = self.core.run_state()
        if self._finished(state.window):
            return
        if state.phase is Phase.TRAIN:
            acked = members.acknowledged()
            fill = members.ready(acked) and not self._holding(state.window)
            self.dispatcher.send(self.core.tick(fill=fill, eligible=acked))
        else:
            closed = state.window
            await self._collect_garbage(now_please=True)  # room for the window's checkpoints
            await self._closer.close(state)
            log.info("window %s closed", closed)
            self._start_eval(closed)

    async def _collect_garbage(self, *, now_please: bool = False) -> None:
        """Drop expired blobs (old windows' checkpoints) every `GC_INTERVAL_S`, and the oldest
        unpinned ones beyond the store's blob budget (`store.blob_share` of its map)."""
        now = time.monotonic()
        if now < self._next_gc and not now_please:
            return
        self._next_gc = now + GC_INTERVAL_S
        budget = self.ctx.store.config.blob_budget_bytes
        try:
            removed = await asyncio.to_thread(self.blobs.gc)
            evicted = await asyncio.to_thread(self.blobs.evict_to, budget)
            pruned = await asyncio.to_thread(self._prune_records)
        except StoreError as exc:
            self._gc_counters["gc_failed"] += 1
            log.warning("blob GC failed: %s", exc)
            return
        self._gc_counters["blobs_expired"] += removed
        self._gc_counters["blobs_evicted"] += evicted
        self._gc_counters.update(pruned)

    def _prune_records(self) -> Counter[str]:
        """Windows older than the newest `record_windows`: their receipts, routes and reported
        verdicts go, their history records are compacted (`RunHistory.compact`); records older
        than the newest `history_windows` are forgotten (`RunHistory.forget`)."""
        window = self.core.run_state().window
        before = window - self.config.record_windows
        return Counter(
            windows_pruned=self.core.prune(self.config.record_windows),
            verdicts_pruned=self.audits.prune(before),
            history_compacted=self.history.compact(before),
            history_forgotten=self.history.forget(window - self.config.history_windows),
        )

    def _holding(self, window: int) -> bool:
        """True while the first window waits for its validators (`wait_for_validators`)."""
        if self._held and (
            window > 0 or len(self.audits.followers) >= self.config.wait_for_validators
        ):
            self._held = False
            log.info(
                "window %s opens: %s validators follow the run", window, len(self.audits.followers)
            )
        return self._held

    def _finished(self, window: int) -> bool:
        return bool(self.config.windows) and window >= self.config.windows

    # evaluation ------------------------------------------------------------------------------

    def _resume_eval(self) -> None:
        windows = [r for r in self.history.windows() if r.get("closed")]
        if windows and "eval" not in windows[-1]:
            self._start_eval(windows[-1]["window"])

    def _start_eval(self, window: int) -> None:
        if self.config.eval_batches == 0:
            return
        if self._eval_task is not None and not self._eval_task.done():
            return  # one at a time; the newest closed window is evaluated next round
        self._evaluating = window
        self._eval_task = asyncio.create_task(self._evaluate(window), name=f"eval/{window}")

    async def _evaluate(self, window: int) -> None:
        record = self.history.window(window) or {}
        digests = {int(s): d for s, d in record.get("weights", {}).items()}
        checkpoints = {s: self.blobs.get(d) for s, d in digests.items()}
        ready = {s: data for s, data in checkpoints.items() if data is not None}
        try:
            if len(ready) != self.spec.n_stages or self._dataset is None:
                raise ValueError(f"window {window} lacks stage checkpoints: {sorted(ready)}")
            results = await in_daemon_thread(self._evaluate_sync, ready, name="evaluate")
        except (ValueError, RuntimeError) as exc:
            log.warning("evaluation of window %s failed: %s", window, exc)
            results = {}
        self.history.set_eval(window, results)
        self._evaluating = None
        log.info("window %s held-out: %s", window, results)

    def _evaluate_sync(self, checkpoints: dict[int, bytes]) -> dict[str, dict[str, float]]:
        assert self._dataset is not None
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        return evaluate_checkpoints(
            self.spec, self._dataset, checkpoints, max_batches=self.config.eval_batches
        )

    # status ----------------------------------------------------------------------------------

    def _closed(
        self, records: list[dict[str, Any]] | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        records = self.history.windows() if records is None else records
        raw = [r for r in records if r.get("closed")]
        return raw, [window_summary(r) for r in raw]

    def _export_metrics(self) -> None:
        metrics = self.ctx.metrics

        def latest_eval(key: str) -> dict[str, float]:
            _, closed = self._closed()
            evals = [w["eval"] for w in closed if w["eval"]]
            return {d: v[key] for d, v in evals[-1].items()} if evals else {}

        metrics.watch_gauges(
            "tessera_eval_loss",
            "Held-out loss per domain, last evaluated window",
            "domain",
            lambda: latest_eval("loss"),
        )
        metrics.watch_gauges(
            "tessera_eval_perplexity",
            "Held-out perplexity per domain, last evaluated window",
            "domain",
            lambda: latest_eval("perplexity"),
        )
        metrics.watch_gauges(
            "tessera_run",
            "The run: window, optimizer step, tokens, tokens/s and the latest training loss",
            "figure",
            self._run_figures,
        )
        metrics.watch_counters(
            "tessera_receipts",
            "Receipts from miners by outcome",
            "outcome",
            lambda: self.intake.counters,
        )
        metrics.watch_counters(
            "tessera_routes_sent",
            "Work sent to stage-0 miners by outcome",
            "outcome",
            lambda: self.dispatcher.counters,
        )
        metrics.watch_counters(
            "tessera_stage_merges",
            "Stage merges: merges, members failed or disagreeing, disputes reported",
            "event",
            lambda: self.merger.counters + self.disputes.counters + self._gc_counters,
        )

    def _run_figures(self) -> dict[str, float]:
        state = self.core.run_state()
        _, closed = self._closed()
        progress = run_progress(
            state,
            closed,
            self.intake.recent_losses,
            tokens_per_batch=self.spec.tokens_per_batch,
            accumulate=self.spec.accumulate,
            earlier=self.history.earlier(),
        )
        figures = {k: float(progress[k]) for k in ("step", "tokens", "tokens_per_s")}
        if progress["loss"] is not None:
            figures["loss"] = float(progress["loss"])
        return {**figures, "window": float(state.window)}

    def status(self) -> dict[str, Any]:
        doc = self.core.status()
        state = self.core.run_state()
        records = self.history.windows()
        earlier = self.history.earlier()
        raw, closed = self._closed(records)
        done = self._finished(state.window) and (
            self.config.eval_batches == 0 or all("eval" in r for r in raw[-1:])
        )
        spec = self.spec
        doc.update(
            spec=spec.to_record(),
            windows_target=self.config.windows,
            done=done,
            ready=self._membership.ready() if self._membership else False,
            waiting_for_validators=(
                max(0, self.config.wait_for_validators - len(self.audits.followers))
                if self._held
                else 0
            ),
            evaluating=self._evaluating,
            progress=run_progress(
                state,
                closed,
                self.intake.recent_losses,
                tokens_per_batch=spec.tokens_per_batch,
                accumulate=spec.accumulate,
                earlier=earlier,
            ),
            history=closed,
            windows_forgotten=earlier["windows"],
            work=total_work(raw, self.core.work_counts(state.window), earlier["work"]),
            membership=dict(self._membership.counters) if self._membership else {},
            audits=dict(self.audits.counters),
            merges={**self.merger.counters, **self.disputes.counters},
            merge_versions={
                w["window"]: w.get("versions", {}) for w in raw[-3:] if w.get("versions")
            },
            loss_curve=loss_curve(records, spec.accumulate),
            miner_rates=miner_rates(raw),
            miner_versions=miner_versions(raw),
        )
        return doc
