"""A validator's pay book: its audit records read under the pay rules and the sampling rule.

Standings and incentives come from `verification.scores` (forfeit over the horizon, the penalty
windows, escrow of inconclusive windows); each window's audit probabilities from
`verification.sampling`, given each miner's audits over the recent windows and its share of the
pay. `status()` says all of it in `/status`, with the rules in a miner's words.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from node.auditing.pay_rule import PayOut, compose
from node.auditing.records import AuditRecords
from node.auditing.screener import Screener
from verification.sampling import AuditHistory, SamplingRule, probabilities
from verification.scores import Decay, Standing, book, normalize, scores, standings
from verification.verdict import Outcome, Verdict

RULES = (
    "You are paid for the backward passes of your windows, counted for {t_decay} windows. "
    "An audit that fails forfeits everything you earned up to the failed window and pays you "
    "nothing for the {penalty} windows after it. A window whose audit is inconclusive is held "
    "until an audit of a later window of yours passes. Every miner is audited with a "
    "probability of at least {floor:.0%} a window, more when it earns more than an equal share, "
    "when its audits are often inconclusive, and every window ({after_fail:.0%}) after a fail, "
    "and at least {after_screen:.0%} in a window whose contribution did not lower the held-out "
    "loss. With the quality screen on, your pay is your stage's weight times your share of its "
    "validated work, times your capacity factor (what you delivered against what you "
    "declared) and, where the validator's quality_pay asks for it, your quality multiplier; "
    "docs/pay.md states the rule."
)


class PayBook:
    def __init__(
        self,
        records: AuditRecords,
        decay: Decay,
        *,
        penalty_windows: int,
        rule: SamplingRule,
        miners_per_window: int,
        capacity_tolerance: float = 0.8,
        quality_pay: str = "off",
    ) -> None:
        self.records = records
        self.capacity_tolerance = capacity_tolerance
        self.quality_pay = quality_pay
        self.screener: Screener | None = None
        """The quality screen, when on: its book and screens enter `chances` and `payout`."""
        self.decay = decay
        self.penalty_windows = penalty_windows
        self.rule = rule
        self.miners_per_window = miners_per_window

    def standings(self, current: int, verdicts: list[Verdict] | None = None) -> dict[str, Standing]:
        """The pay book at `current` (`verdicts`: the records' verdicts, when already read)."""
        verdicts = self.records.verdicts() if verdicts is None else verdicts
        records = book(self.records.work(), verdicts)
        return standings(records, current, self.decay, penalty_windows=self.penalty_windows)

    def incentives(self, current: int) -> dict[str, float]:
        return {m: s.incentive for m, s in self.standings(current).items()}

    def payout(self, current: int) -> PayOut:
        """Each miner's weight under the whole pay rule (`node.auditing.pay_rule`)."""
        validated = self.incentives(current)
        if self.screener is None:
            return compose(validated, {}, None, run_share=1.0, tolerance=1.0)
        since = max(current - self.decay.t_decay, 0)
        return compose(
            validated,
            self.records.screens(since),
            self.screener.fold(),
            run_share=1.0,
            tolerance=self.capacity_tolerance,
            quality_pay=self.quality_pay,
        )

    def chances(self, window: int, miners: list[str]) -> dict[str, float]:
        """Each miner's audit probability for `window`, from its audits of the windows before
        it within the decay horizon and its share of the pay at that window."""
        verdicts = self.records.verdicts()
        recent: dict[str, list[Outcome]] = {}
        for v in verdicts:
            if window - self.decay.t_decay <= v.window < window:
                recent.setdefault(v.miner, []).append(v.outcome)
        history = {
            m: AuditHistory(
                audits=len(o),
                fails=o.count(Outcome.FAIL),
                inconclusive=o.count(Outcome.INCONCLUSIVE),
            )
            for m, o in recent.items()
        }
        pay = {m: s.incentive for m, s in self.standings(window, verdicts).items() if m in miners}
        return probabilities(
            self.rule,
            miners,
            miners_per_window=self.miners_per_window,
            history=history,
            pay_share=normalize(pay),
            screened_out=self.screener.screened_out(window) if self.screener else (),
        )

    def status(self, current: int | None) -> dict[str, Any]:
        rule = asdict(self.rule)
        out: dict[str, Any] = {
            "t_decay": self.decay.t_decay,
            "penalty_windows": self.penalty_windows,
            "sampling": {**rule, "miners_per_window": self.miners_per_window},
            "rules": RULES.format(t_decay=self.decay.t_decay, penalty=self.penalty_windows, **rule),
        }
        if current is None:
            return {**out, "incentives": {}, "standings": {}, "windows": {}}
        work = self.records.work()
        verdicts = self.records.verdicts()
        records = book(work, verdicts)
        book_ = standings(records, current, self.decay, penalty_windows=self.penalty_windows)
        windows: dict[str, dict[str, int]] = {}
        for (miner, window), s in sorted(scores(records).items()):
            windows.setdefault(miner, {})[str(window)] = s
        first_fail: dict[str, int] = {}
        for v in verdicts:
            if v.outcome is Outcome.FAIL:
                first_fail[v.miner] = min(v.window, first_fail.get(v.miner, v.window))
        recent: dict[str, int] = {}  # backward units claimed within the horizon
        for (miner, window), units in work.items():
            if 0 <= current - window <= self.decay.t_decay:
                recent[miner] = recent.get(miner, 0) + units
        return {
            **out,
            "incentives": {m: s.incentive for m, s in book_.items()},
            "standings": {
                m: {**asdict(s), "first_fail": first_fail.get(m), "work": recent.get(m, 0)}
                for m, s in book_.items()
            },
            "windows": windows,
        }
