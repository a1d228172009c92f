"""The validator's audit loop: commit, wait for the window to close, reveal, draw, audit, report.

Each tick asks the orchestrator where the run is (`WindowInfoQuery`), keeps a commitment for the
open window and the next one (so a window's secret is fixed before it opens, except for the
window a validator joins in, which is marked `opened`), and audits every window that closed
since: reveal its secret, draw miners among those with receipts, each with its probability under
the sampling rule (`verification.sampling`; kept beside the revealed secret),
gather each drawn miner's evidence from the orchestrator and the miner's neighbours, replay it on
a daemon thread and judge it against the window-end checkpoint, sign the verdict as an
`AuditVerdict` statement, keep it and send it to the orchestrator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from node.auditing.evidence import Evidence, EvidenceFetcher
from node.auditing.records import AuditRecords
from node.daemon_thread import in_daemon_thread
from p2p.audit_messages import AuditVerdict, VerdictReport, WindowInfo, WindowInfoQuery
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from training.data.build import build_dataset
from training.data.dataset import Dataset
from training.determinism import set_determinism
from training.run_spec import RunSpec
from verification.replay import replay
from verification.sampling import targeted_draw
from verification.verdict import Outcome, Reason, Verdict, judge

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditSettings:
    exact: bool
    threads: int
    timeout_s: float
    data_cache: Path
    commit_ahead: int = 2
    """Windows after the open one that get a commitment now (a window without one is not
    audited: a validator's tick can come later than a short window)."""


@dataclass(frozen=True, slots=True)
class AuditCost:
    """What one audit cost: the validator's CPU seconds to replay and judge (the thread's; torch
    runs `threads` = 1 by default), wall seconds fetching evidence, and the bytes fetched."""

    window: int
    miner: str
    cpu_seconds: float
    fetch_seconds: float
    fetched_bytes: int


class Auditor:
    def __init__(
        self,
        endpoint: Endpoint,
        records: AuditRecords,
        orchestrator: Callable[[], str | None],
        settings: AuditSettings,
        chances: Callable[[int, list[str]], dict[str, float]],
    ) -> None:
        """`chances(window, miners)`: each miner's probability of being audited in `window`."""
        self._ep = endpoint
        self._chances = chances
        self.records = records
        self._orchestrator = orchestrator
        self.settings = settings
        self.counters: Counter[str] = Counter()
        self.latest: deque[Verdict] = deque(maxlen=32)
        self.costs: deque[AuditCost] = deque(maxlen=256)
        self.current_window: int | None = None
        self._dataset: tuple[dict[str, Any], Dataset] | None = None
        self._fetcher: tuple[tuple[str, int], EvidenceFetcher] | None = None
        self.before_draw: Callable[[str, WindowInfo, bytes], Awaitable[None]] | None = None
        """Runs on each window after its secret is revealed, before the draw (the screen)."""

    @property
    def endpoint(self) -> Endpoint:
        return self._ep

    def orchestrator(self) -> str | None:
        return self._orchestrator()

    async def tick(self) -> None:
        orch = self._orchestrator()
        if orch is None:
            return
        timeout = self.settings.timeout_s
        pending = self.records.next_window()
        probe = await self._info(orch, pending if pending is not None else 0, timeout)
        current = probe.current
        self.current_window = current
        if pending is None:  # first contact: audit from the open window on
            pending = current
            self.records.set_next_window(pending)
        self.records.commit(current, opened=True)  # kept as is when committed earlier
        ahead = range(current + 1, current + self.settings.commit_ahead + 1)
        self.records.commit_many(list(ahead), opened=False)
        while pending < current:
            info = probe if probe.window == pending else await self._info(orch, pending, timeout)
            if not info.closed:
                break
            await self.audit_window(orch, info)
            pending += 1
            self.records.set_next_window(pending)

    async def _info(self, orch: str, window: int, timeout: float) -> WindowInfo:
        reply = await self._ep.request(orch, WindowInfoQuery(window=window), timeout=timeout)
        if not isinstance(reply, WindowInfo):
            raise P2PError(f"{orch} answered WindowInfoQuery with {reply!r}")
        return reply

    async def audit_window(self, orch: str, info: WindowInfo) -> list[Verdict]:
        window = info.window
        self.records.set_work(window, info.work)
        secret = self.records.reveal(window)
        if secret is None:
            self.counters["windows_without_commitment"] += 1
            return []
        self.counters["windows"] += 1
        if self.before_draw is not None:
            await self.before_draw(orch, info, secret)
        chances = self._chances(window, sorted(info.work))
        self.records.set_chances(window, chances)
        picked = targeted_draw(secret, window, sorted(info.work.items()), chances)
        verdicts = []
        for pick in picked.miners:
            verdict = await self.audit_miner(orch, info, pick.peer_id)
            if verdict is not None:
                verdicts.append(verdict)
        return verdicts

    async def audit_miner(self, orch: str, info: WindowInfo, miner: str) -> Verdict | None:
        """Audit one miner's whole window (closed, `info`): gather, replay, judge, sign, keep and
        report the verdict. None when the miner has no receipts in the window."""
        spec = RunSpec.from_record(dict(info.spec))
        dataset = await self.dataset(info.spec, spec)
        fetcher = self.fetcher(orch, info.window)
        started = time.perf_counter()
        evidence = await fetcher.gather(info, miner, spec.n_stages)
        fetch_s = time.perf_counter() - started
        if evidence is None:
            return None
        verdict, cpu = await in_daemon_thread(self._judge, spec, dataset, evidence, name="audit")
        self.costs.append(AuditCost(info.window, miner, cpu, fetch_s, evidence.fetched_bytes))
        await self._record(orch, verdict)
        return verdict

    async def window_info(self, orch: str, window: int) -> WindowInfo:
        return await self._info(orch, window, self.settings.timeout_s)

    def fetcher(self, orch: str, window: int) -> EvidenceFetcher:
        """The window's evidence fetcher: one per window, so the neighbours' receipts and the
        blobs it fetched serve every miner (and the quality screen)."""
        if self._fetcher is None or self._fetcher[0] != (orch, window):
            fetcher = EvidenceFetcher(
                self._ep, orch, timeout=self.settings.timeout_s, exact=self.settings.exact
            )
            self._fetcher = ((orch, window), fetcher)
        return self._fetcher[1]

    async def dataset(self, record: dict[str, Any], spec: RunSpec) -> Dataset:
        if self._dataset is None or self._dataset[0] != record:
            config = spec.data_config(self.settings.data_cache)
            dataset = await in_daemon_thread(build_dataset, config, name="dataset")
            if spec.data_digest and dataset.digest != spec.data_digest:
                raise ValueError(f"dataset {dataset.digest} is not the run's {spec.data_digest}")
            self._dataset = (record, dataset)
        return self._dataset[1]

    def _judge(self, spec: RunSpec, dataset: Dataset, ev: Evidence) -> tuple[Verdict, float]:
        """Replay and judge on this (daemon) thread; returns the verdict and this thread's CPU
        seconds for it (the replay's own figure is process-wide)."""
        started = time.thread_time()
        set_determinism(threads=self.settings.threads)
        result = replay(spec, ev.stage, ev.start, ev.units, dataset)
        verdict = judge(
            result,
            validator=self._ep.peer_id,
            miner=ev.miner,
            window=ev.window,
            stage=ev.stage,
            run=self._ep.run,
            exact=self.settings.exact,
            reported_checkpoint=ev.reported,
            evidence=ev.digests,
        )
        gaps = ev.missing if verdict.outcome is Outcome.PASS else []  # never pass on gaps
        if verdict.outcome is Outcome.FAIL:
            gaps = ev.incomplete  # nor fail when the receipts may not be all the work done
        if gaps:
            verdict = dataclasses.replace(
                verdict,
                outcome=Outcome.INCONCLUSIVE,
                reason=Reason.MISSING_EVIDENCE,
                first_bad_unit=-1,
                detail=f"{'; '.join(gaps)} ({verdict.reason.value}: {verdict.detail})"[:500],
            )
        return verdict, time.thread_time() - started

    async def _record(self, orch: str, verdict: Verdict) -> None:
        # The signed statement carries one digest over the evidence (its head must stay small);
        # the full list is kept here with the verdict.
        summary = blake3.blake3(b"".join(verdict.evidence)).digest()
        signed = dataclasses.replace(verdict, evidence=(summary,), detail=verdict.detail[:300])
        statement = self._ep.statement(AuditVerdict(verdict=signed.encode()))
        self.records.add_verdict(signed, statement, evidence=verdict.evidence)
        self.latest.append(signed)
        self.counters[verdict.outcome.value] += 1
        log.info(
            "audit of %s window %s (stage %s): %s %s %s",
            verdict.miner, verdict.window, verdict.stage, verdict.outcome.value,
            verdict.reason.value, verdict.detail,
        )  # fmt: skip
        try:
            await self._ep.request(
                orch, VerdictReport(verdicts=[statement]), timeout=self.settings.timeout_s
            )
            self.counters["reported"] += 1
        except (P2PError, TimeoutError) as exc:
            self.counters["report_failed"] += 1
            log.info("verdict not delivered to %s: %s", orch, exc)


async def run_audits(
    auditor: Auditor,
    tick_s: float,
    then: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Tick the auditor every `tick_s`; `then(orchestrator)` after each tick (e.g. checking
    other validators' fails)."""
    while True:
        try:
            await auditor.tick()
            orch = auditor.orchestrator()
            if then is not None and orch is not None:
                await then(orch)
        except (P2PError, TimeoutError, OSError, ValueError) as exc:
            auditor.counters["tick_failed"] += 1
            log.info("audit tick failed: %s", exc)
        await asyncio.sleep(tick_s)
