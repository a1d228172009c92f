"""The validator's quality screen of every miner of every window, and its Templar score book.

After a window closes and its secret is revealed, before the audit draw: fetch the checkpoints
the window started from (every stage) and each miner's own start and window-end checkpoints
from the orchestrator, screen every miner that worked (`verification.quality`) on a held-out
batch drawn from the revealed secret, keep the screens with the window's facts (stage of each
miner, declared capacities, seconds) and fold them into the score book
(`verification.templar`). Miners whose contribution did not lower the loss are then drawn for
an audit by replay with the sampling rule's `after_screen` probability.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from node.auditing.auditor import Auditor
from node.auditing.records import AuditRecords
from node.daemon_thread import in_daemon_thread
from p2p.audit_messages import WindowInfo
from p2p.errors import P2PError
from training.determinism import set_determinism
from training.run_spec import RunSpec
from verification.quality import Contribution, Screen, heldout_batch, screen_window
from verification.templar import MinerScore, TemplarBook, TemplarParams

log = logging.getLogger(__name__)


def stage_of(info: WindowInfo, n_stages: int) -> dict[str, int]:
    """Miner -> the stage it held on the window's routes (workers without a route left out)."""
    out: dict[str, int] = {}
    for miners in info.routes.values():
        if len(miners) == n_stages:
            out.update({m: s for s, m in enumerate(miners) if m in info.work})
    return out


class Screener:
    def __init__(
        self,
        auditor: Auditor,
        records: AuditRecords,
        params: TemplarParams,
        *,
        batch_size: int,
        threads: int,
    ) -> None:
        self._auditor = auditor
        self.records = records
        self.params = params
        self.batch_size = batch_size
        self.threads = threads
        self.counters: Counter[str] = Counter()
        self.cpu_s = 0.0
        """CPU seconds of the screens run by this process (the screening thread's)."""

    async def screen(self, orch: str, info: WindowInfo, secret: bytes) -> None:
        """Screen window `info` (closed; `secret` revealed), keep it, fold it into the book."""
        try:
            screens, facts = await self._screen(orch, info, secret)
        except (P2PError, TimeoutError, OSError, ValueError, RuntimeError) as exc:
            self.counters["screen_failed"] += 1
            log.info("screen of window %s failed: %s", info.window, exc)
            return
        self.records.set_screen(info.window, {m: s.to_record() for m, s in screens.items()}, facts)
        self.counters["windows_screened"] += 1
        self.counters["miners_screened"] += len(screens)
        self.fold()

    async def _screen(
        self, orch: str, info: WindowInfo, secret: bytes
    ) -> tuple[dict[str, Screen], dict[str, Any]]:
        spec = RunSpec.from_record(dict(info.spec))
        dataset = await self._auditor.dataset(info.spec, spec)
        fetcher = self._auditor.fetcher(orch, info.window)
        stages = stage_of(info, spec.n_stages)

        async def blob(digest: str) -> bytes | None:
            if not digest:
                return None  # seed init
            data = await fetcher.blob(orch, digest)
            if data is None:
                raise P2PError(f"checkpoint {digest} not served by {orch}")
            return data

        base = {s: await blob(info.start.get(str(s), "")) for s in range(spec.n_stages)}
        contributions = []
        for miner, stage in sorted(stages.items()):
            start = info.starts.get(miner) or info.start.get(str(stage), "")
            end = info.ends.get(miner, "")
            if not end and sum(s == stage for s in stages.values()) == 1:
                end = info.end.get(str(stage), "")  # alone on its stage: nothing was merged
            ended = await fetcher.blob(orch, end) if end else None
            contributions.append(Contribution(miner, stage, await blob(start), ended))
        batch = heldout_batch(
            dataset,
            secret,
            info.window,
            batch_size=self.batch_size,
            seq_len=spec.seq_len,
            mixture=spec.mixture or None,
        )

        def run() -> tuple[dict[str, Screen], float]:
            started = time.thread_time()
            set_determinism(threads=self.threads)
            return screen_window(spec, base, contributions, batch), time.thread_time() - started

        screens, cpu = await in_daemon_thread(run, name="screen")
        self.cpu_s += cpu
        declared = {
            m: float(c)
            for m, c in info.capacity.items()
            if isinstance(c, int | float) and not isinstance(c, bool)
        }
        facts = {
            "stage_of": stages,
            "work": dict(info.work),
            "capacity": declared,
            "seconds": float(info.seconds),
            "tokens_per_batch": spec.tokens_per_batch,
            "spec": dict(info.spec),
            "cpu_s": cpu,
        }
        return screens, facts

    def fold(self) -> TemplarBook:
        """The book with every screened window folded in (in order; kept in the records)."""
        stored = self.records.quality_book() or {}
        last = int(stored.get("window", -1))
        book = TemplarBook(
            self.params,
            {m: MinerScore.from_record(r) for m, r in (stored.get("miners") or {}).items()},
        )
        pending = self.records.screens(last + 1)
        for window, row in sorted(pending.items()):
            screens = {m: Screen.from_record(m, r) for m, r in row["screens"].items()}
            book.update(screens, worked=row.get("work", {}).keys())
            last = window
        if pending:
            self.records.set_quality_book(last, {m: s.to_record() for m, s in book.miners.items()})
        return book

    def screened_out(self, window: int) -> set[str]:
        """Miners whose contribution in `window` did not lower the held-out loss (or was
        missing)."""
        row = self.records.screen(window)
        if row is None:
            return set()
        screens = [Screen.from_record(m, r) for m, r in row["screens"].items()]
        return {s.miner for s in screens if not s.improvement > 0}
