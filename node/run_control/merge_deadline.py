"""How long a stage merge may take, learned from the merges so far.

A member that dies between closing its window and the merge leaves its stage-mates retrying it
until they stop gathering (40 % of the deadline): with a fixed 60 s that stalled the run ~25 s
per such death. The deadline is `clamp(k * EWMA(duration of merges every member completed),
min_s, max_s)`; before any merge completed, and after one where no member reported at all (it
may have been too short), it is `max_s`.
"""

from __future__ import annotations

import math


class MergeDeadline:
    def __init__(self, *, max_s: float, min_s: float, k: float, alpha: float = 0.3) -> None:
        if not (0 < min_s <= max_s and math.isfinite(max_s) and k > 0 and 0 < alpha <= 1):
            raise ValueError("merge deadline: need 0 < min_s <= max_s, k > 0, alpha in (0, 1]")
        self._max, self._min, self._k, self._alpha = max_s, min_s, k, alpha
        self.estimate: float | None = None

    def seconds(self) -> float:
        if self.estimate is None:
            return self._max
        return min(self._max, max(self._min, self._k * self.estimate))

    def observe(self, elapsed_s: float, *, members: int, reported: int) -> None:
        """Fold in one merge: its duration when every member reported; a merge nobody reported
        forgets what was learned (back to `max_s`); a partial one teaches nothing."""
        if reported == 0:
            self.estimate = None
        elif reported == members and math.isfinite(elapsed_s) and elapsed_s >= 0:
            a = self._alpha
            self.estimate = (
                elapsed_s if self.estimate is None else a * elapsed_s + (1 - a) * self.estimate
            )
