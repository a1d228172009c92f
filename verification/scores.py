"""The IOTA score book as pure functions: S per (miner, window), decay, incentives, weights.

Rule for S. IOTA's S(m, w) is the number of backward passes miner m processed in window w that
were validated. Audits are sampled, so here a window's backward units (its signed backward
receipts) count unless an audit of that window *failed*:
  - audited and passed, or never audited: S = the backward units;
  - any failed audit of the window (from any validator this book has verdicts of): S = 0, the
    whole window's score is forfeited, not just the audited units;
  - inconclusive audits (missing evidence) never change S.
The book is recomputed from its records whenever incentives are read, so a fail that arrives
later (a late audit within the decay horizon) forfeits the window retroactively. Forward units
earn nothing: a free-rider that never runs backward scores 0.

Decay. A window's score counts with weight 1 while its age (current window - its window) is at
most `t_decay`, then 0 (IOTA's step decay); optionally geometric, gamma**age, with the same
cut-off. I_m = sum over windows of S(m, w) · weight(age). Weights for the chain are the
incentives normalised to sum 1 (all zero when nobody scored).
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
    """S by (miner, window); records of the same (miner, window) are merged (units summed,
    audits pooled)."""
    merged: dict[tuple[str, int], WindowWork] = {}
    for r in records:
        key = (r.miner, r.window)
        old = merged.get(key)
        if old is not None:
            r = WindowWork(r.miner, r.window, old.backward + r.backward, old.audits + r.audits)
        merged[key] = r
    return {key: window_score(r) for key, r in merged.items()}


def incentives(
    records: Iterable[WindowWork], current_window: int, decay: Decay
) -> dict[str, float]:
    """I_m = sum of S(m, w) · decay.weight(current_window - w), for every miner in the records
    (0.0 for those whose windows all decayed or were forfeited)."""
    out: dict[str, float] = {}
    for (miner, window), s in scores(records).items():
        out[miner] = out.get(miner, 0.0) + s * decay.weight(current_window - window)
    return out


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
