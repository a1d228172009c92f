"""Validator role: audits miners and sets weights on its chain for its subnet.

The audits (`node.auditing`): commit to a secret before each window, and after the orchestrator
closes it reveal, draw miners, replay their work from evidence fetched from the orchestrator and
the miners' neighbours, and sign, keep and report the verdicts. Before each window's draw the
quality screen (`node.auditing.screener`) scores every miner's contribution; the weights set on
the chain follow the pay rule (`node.auditing.pay_rule`, docs/pay.md) on the run's mechanism.
`/status` shows the commitments and reveals, verdict counts, the latest verdicts, each miner's
timeline of verdicts, the IOTA score book and the quality book; `/metrics` the counts, each
miner's incentive and weight.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.auditing.auditor import Auditor, AuditSettings, run_audits
from node.auditing.foreign import ForeignFails
from node.auditing.pay_book import PayBook
from node.auditing.records import AuditRecords
from node.auditing.retention import AuditRetention
from node.auditing.screener import Screener
from node.chain.weight_setter import WeightPolicy, WeightSetter
from node.merging.disputes import DisputeLog
from node.roles.base import RoleComponent, RoleContext
from node.service import sleep_forever
from verification.sampling import SamplingRule
from verification.scores import Decay
from verification.templar import TemplarParams

TIMELINE_WINDOWS = 48
"""Verdicts per miner kept in `/status` → `validator.timeline` (the newest windows)."""


@dataclass(kw_only=True, slots=True)
class ValidatorConfig:
    audit: bool = True
    """Run the audit loop (needs an admitted orchestrator)."""
    orchestrator: str = ""
    """The orchestrator's peer id ("" = the first admitted peer with the orchestrator role)."""
    miners_per_window: int = 2
    """Miners audited in a window at the least (on average; `sampling.floor` may ask more)."""
    sampling: SamplingRule = field(default_factory=SamplingRule)
    """Each miner's audit probability per window (`verification.sampling`)."""
    penalty_windows: int = 150
    """Windows after a failed one that pay its miner nothing (docs/decisions.md: Pay rules)."""
    exact: bool = True
    """Bitwise comparison (same device kind and settings as the miners); False: tolerances."""
    threads: int = 1
    """torch threads of the replay: must equal the miners' `miner.threads` for exact mode."""
    data_cache: str = ""
    """Directory of the built corpus and tokenizer; empty = `<home>/data`."""
    commit_ahead: int = 2
    """Windows after the open one committed to in advance (each with its own secret)."""
    tick_s: float = 1.0
    timeout_s: float = 30.0
    t_decay: int = 10
    """The score book's step decay: a window's score counts while its age is at most this."""
    keep_windows: int = TIMELINE_WINDOWS
    """Windows of audit records kept at the least; the decay horizon, and for a failed
    verdict the penalty windows after it, are kept whatever this says
    (`node.auditing.retention`)."""
    weights_interval: int = 100
    """Blocks between two weight settings on the chain (`[chain]`; within its rate limit)."""
    burn_uid: int = -1
    """The subnet owner's uid that `burn_fraction` of the weight goes to (-1: none)."""
    burn_fraction: float = 0.0
    screen: bool = True
    """Screen every miner every window (`verification.quality`): its book, audits drawn for
    contributions that did not help, and (`quality_pay`) the quality factor of the pay."""
    screen_batch_size: int = 4
    """Held-out sequences of the screening batch."""
    templar: TemplarParams = field(default_factory=TemplarParams)
    """The quality score book's parameters, named as the Templar document names them."""
    quality_pay: str = "off"
    """How the quality book enters the pay: "off" (it does not: the screen draws audits and
    is shown), "gate" (0 for a miner whose contributions hurt more often than they help, else
    its sync score) or "templar" (final scores power-normalised in the stage, as Templar
    pays). docs/pay.md and docs/decisions.md give what each did on bench/incentives.py."""
    capacity_tolerance: float = 0.8
    """Share of its stage's median delivered/declared throughput a miner may fall to unpaid."""
    mechanism: int = 0
    """The subnet mechanism this run's weights are set on: one per competition (training run);
    the chain splits the emission between mechanisms (`Hyperparams.mechanism_split`)."""

    def __post_init__(self) -> None:
        if self.screen_batch_size < 1 or not 0 < self.capacity_tolerance <= 1:
            raise ValueError(
                "validator.screen_batch_size must be >= 1, capacity_tolerance in (0, 1]"
            )
        if self.quality_pay not in ("off", "gate", "templar"):
            raise ValueError("validator.quality_pay must be 'off', 'gate' or 'templar'")
        if not 0 <= self.mechanism < 256:
            raise ValueError("validator.mechanism must be in 0..255")
        if self.weights_interval < 1 or not 0 <= self.burn_fraction <= 1:
            raise ValueError("validator.weights_interval must be >= 1, burn_fraction in [0, 1]")
        if self.burn_fraction > 0 and self.burn_uid < 0:
            raise ValueError("validator.burn_fraction needs a validator.burn_uid")
        if (
            min(
                self.miners_per_window,
                self.t_decay,
                self.commit_ahead - 1,
                self.penalty_windows,
                self.keep_windows,
            )
            < 0
            or self.threads < 1
        ):
            raise ValueError(
                "validator.miners_per_window, t_decay, penalty_windows and keep_windows must "
                "be >= 0, "
                "threads >= 1"
            )
        for name in ("tick_s", "timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"validator.{name} must be a positive number of seconds")


class ValidatorComponent(RoleComponent[ValidatorConfig]):
    name = "validator"

    def __init__(self, config: ValidatorConfig, ctx: RoleContext) -> None:
        super().__init__(config, ctx)
        self.records = AuditRecords(ctx.store, ctx.run_id, ctx.endpoint.peer_id)
        self.decay = Decay(t_decay=config.t_decay)
        self.pay = PayBook(
            self.records,
            self.decay,
            penalty_windows=config.penalty_windows,
            rule=config.sampling,
            miners_per_window=config.miners_per_window,
            capacity_tolerance=config.capacity_tolerance,
            quality_pay=config.quality_pay,
        )
        cache = Path(config.data_cache) if config.data_cache else ctx.home / "data"
        self.auditor = Auditor(
            ctx.endpoint,
            self.records,
            self._orchestrator,
            AuditSettings(
                exact=config.exact,
                threads=config.threads,
                timeout_s=config.timeout_s,
                data_cache=cache,
                commit_ahead=config.commit_ahead,
            ),
            self.pay.chances,
        )
        self.screener: Screener | None = None
        if config.screen:
            self.screener = Screener(
                self.auditor,
                self.records,
                config.templar,
                batch_size=config.screen_batch_size,
                threads=config.threads,
            )
            self.auditor.before_draw = self.screener.screen
            self.pay.screener = self.screener
        self.foreign = ForeignFails(self.auditor, horizon=config.t_decay)
        self.retention = AuditRetention(
            self.records,
            t_decay=config.t_decay,
            penalty_windows=config.penalty_windows,
            keep_windows=config.keep_windows,
        )
        self.weights: WeightSetter | None = None
        if ctx.chain is not None:
            policy = WeightPolicy(
                interval_blocks=config.weights_interval,
                burn_uid=config.burn_uid if config.burn_uid >= 0 else None,
                burn_fraction=config.burn_fraction,
                mechid=config.mechanism,
            )
            self.weights = WeightSetter(ctx.chain, self.payout, self._hotkey_of, policy)
            ctx.metrics.watch_counters(
                "tessera_weights_set",
                "Weight settings on the chain by outcome",
                "outcome",
                lambda: self.weights.counters if self.weights else {},
            )
        self.disputes = DisputeLog(ctx.store, ctx.run_id)
        self.disputes.register(ctx.endpoint)
        metrics = ctx.metrics
        metrics.watch_counters(
            "tessera_audits",
            "Audits by outcome, and audit loop events",
            "event",
            lambda: self.auditor.counters,
        )
        metrics.watch_gauges(
            "tessera_miner_incentive",
            "IOTA incentive I_m per miner (validated backward passes, decayed)",
            "miner",
            self.incentives,
        )
        metrics.watch_gauges(
            "tessera_miner_weight",
            "Each miner's share of the emission under the pay rule (docs/pay.md)",
            "miner",
            self.payout,
        )
        metrics.watch_counters(
            "tessera_screens",
            "Quality screens by event",
            "event",
            lambda: self.screener.counters if self.screener else {},
        )

    async def run(self) -> None:
        if self.weights is not None:
            self.manager.run_task("weights", self._set_weights(self.weights))
        if not self.config.audit:
            await sleep_forever()
        await run_audits(self.auditor, self.config.tick_s, self._after_tick)

    async def _after_tick(self, orch: str) -> None:
        await self.foreign.check(orch)
        self.auditor.counters["records_pruned"] += self.retention.prune(self.auditor.current_window)

    async def _set_weights(self, setter: WeightSetter) -> None:
        while True:
            await setter.tick()
            await asyncio.sleep(self.config.tick_s)

    def _hotkey_of(self, peer: str) -> str | None:
        session = self.ctx.endpoint.sessions.get(peer)
        return session.hotkey if session is not None else None

    def _orchestrator(self) -> str | None:
        sessions = self.ctx.endpoint.sessions
        if self.config.orchestrator:
            return self.config.orchestrator if self.config.orchestrator in sessions else None
        found = sorted(p for p, s in sessions.items() if "orchestrator" in s.roles)
        return found[0] if found else None

    def incentives(self) -> dict[str, float]:
        current = self.auditor.current_window
        if current is None:
            return {}
        return self.pay.incentives(current)

    def payout(self) -> dict[str, float]:
        """Each miner's weight under the pay rule (what the validator sets on its chain)."""
        current = self.auditor.current_window
        if current is None:
            return {}
        return self.pay.payout(current).weights

    def status(self) -> dict[str, Any]:
        verdicts = self.records.verdicts()
        audited: dict[str, dict[str, int]] = {}
        timeline: dict[str, list[list[Any]]] = {}
        for v in sorted(verdicts, key=lambda v: v.window):
            counts = audited.setdefault(v.miner, {"pass": 0, "fail": 0, "inconclusive": 0})
            counts[v.outcome.value] += 1
            timeline.setdefault(v.miner, []).append([v.window, v.outcome.value, v.reason.value])
        return {
            "weights": self.weights.status() if self.weights else None,
            "hotkey": self.ctx.binding_hotkey,
            "orchestrator": self._orchestrator(),
            "window": self.auditor.current_window,
            "next_window": self.records.next_window(),
            "commitments": self.records.commitments(self.records.next_window() or 0),
            "verdicts": {o: self.auditor.counters[o] for o in ("pass", "fail", "inconclusive")},
            "events": dict(self.auditor.counters),
            "audited": audited,
            "timeline": {m: rows[-TIMELINE_WINDOWS:] for m, rows in timeline.items()},
            "merge_disputes": {
                "total": self.disputes.counters["disputes"],
                "accused": self.disputes.accused(),
            },
            "latest": [
                {
                    "miner": v.miner,
                    "window": v.window,
                    "stage": v.stage,
                    "outcome": v.outcome.value,
                    "reason": v.reason.value,
                    "units": v.units_audited,
                    "backward": v.backward_units,
                    "detail": v.detail,
                }
                for v in list(self.auditor.latest)[-10:]
            ],
            "scores": self.pay.status(self.auditor.current_window),
            "quality": self._quality(),
        }

    def _quality(self) -> dict[str, Any] | None:
        current = self.auditor.current_window
        if self.screener is None or current is None:
            return None
        book = self.screener.fold()
        out = self.pay.payout(current)
        latest = self.records.screens(max(current - 3, 0))
        last = latest[max(latest)] if latest else None
        return {
            "ranking": book.ranking(),
            "quality_pay": self.pay.quality_pay,
            "templar_weights": book.weights(),
            "miners": {m: {**s.to_record(), "ordinal": s.ordinal} for m, s in book.miners.items()},
            "weights": out.weights,
            "stage_weights": {str(k): v for k, v in out.stages.items()},
            "quality_multipliers": out.quality,
            "capacity_factors": out.capacity,
            "last_screen": None
            if last is None
            else {"screens": _finite(last["screens"]), "cpu_s": last.get("cpu_s")},
            "events": dict(self.screener.counters),
            "cpu_s": self.screener.cpu_s,
        }


def _finite(screens: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Screens for JSON: a loss that broke the model (inf) shown as null."""
    return {
        m: {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for m, r in screens.items()
    }
