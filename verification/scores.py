"""The IOTA score book as pure functions: S per (miner, window), decay, pay rules, weights.

Rule for S. IOTA's S(m, w) is the number of backward passes miner m processed in window w that
were validated. Audits are sampled, so a window's backward units (its signed backward receipts)
count unless an audit failed; forward units earn nothing (a free-rider scores 0).

Pay rules (`standings`), so that cheating does not pay when only a sample is audited:
  - a failed audit of window f forfeits every window of the miner up to f (the whole decay
    horizon, not only the audited window) and bars it for `penalty_windows` windows after f:
    windows f+1 .. f+penalty_windows earn nothing either;
  - an inconclusive audit (missing evidence) puts its window in escrow: paid once an audit of
    a later window of that miner passes, forfeited by a later fail, otherwise left to decay;
  - a window audited and passed, or never audited, earns its backward units.
The book is recomputed from its records whenever it is read, so a fail that arrives late still
forfeits everything before it. `docs/decisions.md` (Pay rules) gives the expected-payoff
argument for the defaults.

Decay. A window's score counts with weight 1 while its age (current window - its window) is at
most `t_decay`, then 0 (IOTA's step decay); optionally geometric, gamma**age, with the same
cut-off. I_m = sum over the windows paid of S(m, w) · weight(age). Weights for the chain are
the incentives normalised to sum 1 (all zero when nobody scored).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from verification.verdict import Outcome, Verdict


@dataclass(frozen=True, slots=True)
class WindowWork:
    """One miner's record for one window."""

    miner: str
    window: int
    backward: int
    """Backward units its receipts claim in the window."""
    audits: tuple[Outcome, ...] = ()
    """Outcomes of the audits of this (miner, window) known to the book."""


@dataclass(frozen=True, slots=True)
class Decay:
    t_decay: int
    """A window counts while its age is at most this."""
    gamma: float | None = None
    """None: step decay (weight 1 up to t_decay); else weight gamma**age up to t_decay."""

    def __post_init__(self) -> None:
        if self.t_decay < 0:
            raise ValueError("t_decay must be >= 0")
        if self.gamma is not None and not 0.0 < self.gamma <= 1.0:
            raise ValueError("gamma must be in (0, 1]")

    def weight(self, age: int) -> float:
        if age < 0:
            raise ValueError(f"a window from the future (age {age})")
        if age > self.t_decay:
            return 0.0
        return 1.0 if self.gamma is None else self.gamma**age


def window_score(work: WindowWork) -> int:
    """S(m, w): the window's backward units, or 0 once any audit of it failed."""
    if work.backward < 0:
        raise ValueError("backward units must be >= 0")
    return 0 if Outcome.FAIL in work.audits else work.backward


def book(
    backward_units: Mapping[tuple[str, int], int], verdicts: Iterable[Verdict] = ()
) -> list[WindowWork]:
    """Window records from backward-unit counts by (miner, window) and the verdicts known.

    A verdict for a (miner, window) without counted units adds a record with 0 units.
    """
    audits: defaultdict[tuple[str, int], list[Outcome]] = defaultdict(list)
    for v in verdicts:
        audits[(v.miner, v.window)].append(v.outcome)
    keys = sorted(set(backward_units) | set(audits))
    return [
        WindowWork(m, w, backward_units.get((m, w), 0), tuple(audits.get((m, w), ())))
        for m, w in keys
    ]


def scores(records: Iterable[WindowWork]) -> dict[tuple[str, int], int]:
    """S by (miner, window) of the window alone (0 once an audit of it failed); records of the
    same (miner, window) are merged (units summed, audits pooled)."""
    return {key: window_score(r) for key, r in _merged(records).items()}


def _merged(records: Iterable[WindowWork]) -> dict[tuple[str, int], WindowWork]:
    merged: dict[tuple[str, int], WindowWork] = {}
    for r in records:
        key = (r.miner, r.window)
        old = merged.get(key)
        if old is not None:
            r = WindowWork(r.miner, r.window, old.backward + r.backward, old.audits + r.audits)
        merged[key] = r
    return merged


@dataclass(frozen=True, slots=True)
class Standing:
    """One miner under the pay rules at the current window."""

    incentive: float
    """I_m: what it is paid on (decayed units of the windows paid)."""
    escrow: float
    """Decayed units of inconclusive windows waiting for a later pass."""
    barred_through: int | None
    """Its windows up to this one earn nothing (its last failed window + penalty_windows)."""


def standings(
    records: Iterable[WindowWork], current_window: int, decay: Decay, *, penalty_windows: int = 0
) -> dict[str, Standing]:
    """Every miner of the records under the pay rules (see the module docstring)."""
    if penalty_windows < 0:
        raise ValueError("penalty_windows must be >= 0")
    by_miner: defaultdict[str, list[WindowWork]] = defaultdict(list)
    for r in _merged(records).values():
        by_miner[r.miner].append(r)
    out: dict[str, Standing] = {}
    for miner, works in by_miner.items():
        fails = [r.window for r in works if Outcome.FAIL in r.audits]
        barred = max(fails) + penalty_windows if fails else None
        last_pass = max((r.window for r in works if Outcome.PASS in r.audits), default=None)
        paid = held = 0.0
        for r in works:
            value = window_score(r) * decay.weight(current_window - r.window)
            if barred is not None and r.window <= barred:
                continue
            escrowed = Outcome.INCONCLUSIVE in r.audits and Outcome.PASS not in r.audits
            if escrowed and (last_pass is None or last_pass <= r.window):
                held += value
                continue
            paid += value
        out[miner] = Standing(incentive=paid, escrow=held, barred_through=barred)
    return out


def incentives(
    records: Iterable[WindowWork], current_window: int, decay: Decay, *, penalty_windows: int = 0
) -> dict[str, float]:
    """I_m under the pay rules for every miner in the records (0.0 for those whose windows all
    decayed, were forfeited or wait in escrow)."""
    book_ = standings(records, current_window, decay, penalty_windows=penalty_windows)
    return {miner: s.incentive for miner, s in book_.items()}


def normalize(values: Mapping[str, float]) -> dict[str, float]:
    """Non-negative values scaled to sum 1; all zeros when the total is 0."""
    if any(v < 0 or not math.isfinite(v) for v in values.values()):
        raise ValueError("incentives must be finite and >= 0")
    total = math.fsum(values.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in values.items()}


def weight_vector(values: Mapping[str, float], miners: Sequence[str]) -> list[float]:
    """Normalised weights in the order of `miners` (e.g. by uid); unknown miners get 0 and
    miners not listed are left out before normalising."""
    listed = {m: values.get(m, 0.0) for m in miners}
    weights = normalize(listed)
    return [weights[m] for m in miners]
