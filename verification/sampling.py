"""Targeted audit sampling: who is audited in a window, from the committed secret.

Each miner that worked in a window is audited with its own probability (`probabilities`), and
the draw is Poisson sampling from the validator's revealed secret (`targeted_draw`): miner m is
drawn when its uniform number from the secret's stream for (window, m) falls below its
probability. Anyone holding the revealed secret and the probabilities (kept with the window's
draw and shown in `/status`) can redo the draw; the miner cannot know before the reveal.

The probability of a miner:
  base = max(floor, miners_per_window / number of miners)    every miner gets at least this
  x (1 + pay_factor · max(0, share · n - 1))                 the more it earns, the likelier
  x inconclusive_factor  when more than `inconclusive_rate` of its recent audits were
                         inconclusive (more than honest miners' evidence goes missing)
  = after_fail           when it failed an audit in the recent windows (a cheater found once
                         is watched),
  at least after_screen  when the window's quality screen (`verification.quality`) found that
                         its contribution did not lower the held-out loss (screening finds
                         whom to prove), capped at 1.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from verification.selection import SECRET_BYTES, AuditDraw, MinerDraw, Stream

_SCALE = 1 << 53


@dataclass(kw_only=True, slots=True)
class SamplingRule:
    floor: float = 0.25
    """Every miner's least probability of being audited in a window."""
    pay_factor: float = 1.0
    """Raise for a miner earning more than an equal share (share · n - 1, times this)."""
    inconclusive_rate: float = 0.25
    """Share of recent audits inconclusive above which a miner is audited more."""
    inconclusive_factor: float = 2.0
    after_fail: float = 1.0
    """Probability for a miner that failed an audit within the recent windows."""
    after_screen: float = 1.0
    """Least probability for a miner whose window contribution did not improve the model."""

    def __post_init__(self) -> None:
        for name in ("floor", "inconclusive_rate", "after_fail", "after_screen"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"validator.sampling.{name} must be in [0, 1]")
        if not (math.isfinite(self.pay_factor) and self.pay_factor >= 0):
            raise ValueError("validator.sampling.pay_factor must be >= 0")
        if not (math.isfinite(self.inconclusive_factor) and self.inconclusive_factor >= 1):
            raise ValueError("validator.sampling.inconclusive_factor must be >= 1")


@dataclass(frozen=True, slots=True)
class AuditHistory:
    """A miner's audits over the recent windows."""

    audits: int = 0
    fails: int = 0
    inconclusive: int = 0


def probabilities(
    rule: SamplingRule,
    miners: Iterable[str],
    *,
    miners_per_window: int,
    history: Mapping[str, AuditHistory],
    pay_share: Mapping[str, float],
    screened_out: Collection[str] = (),
) -> dict[str, float]:
    """Each miner's probability of being audited in the window (see the module docstring)."""
    names = sorted(set(miners))
    if not names:
        return {}
    n = len(names)
    base = max(rule.floor, min(1.0, miners_per_window / n))
    out: dict[str, float] = {}
    for m in names:
        seen = history.get(m, AuditHistory())
        if seen.fails:
            out[m] = max(base, rule.after_fail)
            continue
        p = base * (1.0 + rule.pay_factor * max(0.0, pay_share.get(m, 0.0) * n - 1.0))
        if seen.audits and seen.inconclusive / seen.audits > rule.inconclusive_rate:
            p *= rule.inconclusive_factor
        if m in screened_out:
            p = max(p, rule.after_screen)
        out[m] = min(1.0, p)
    return out


def targeted_draw(
    secret: bytes, window: int, miners: Iterable[tuple[str, int]], chance: Mapping[str, float]
) -> AuditDraw:
    """The miners drawn (all their units) from (peer id, units) of every miner of the window:
    each independently with its probability in `chance` (0 for one not listed)."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the secret must be {SECRET_BYTES} bytes")
    table = sorted(miners)
    ids = [peer for peer, _ in table]
    if len(set(ids)) != len(ids):
        raise ValueError("a miner is listed twice")
    picks = []
    for peer, units in table:
        p = chance.get(peer, 0.0)
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"probability {p} of {peer} is not in [0, 1]")
        u = Stream(secret, window, b"audit:" + peer.encode()).below(_SCALE) / _SCALE
        if u < p:
            picks.append(MinerDraw(peer, tuple(range(units))))
    return AuditDraw(window, tuple(picks))
