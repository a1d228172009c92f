"""How long a validator keeps its audit records, and forgetting the rest each audit tick.

A window's records (commitment and secret, claimed work, screens, verdicts, checks of other
validators' fails) matter while the window is within the score book's decay horizon: its work
is paid, its verdicts set the audit probabilities of later windows (`PayBook.chances`) and a
late fail reported by another validator is still checked. A failed verdict matters longer: it
bars its miner for `penalty_windows` windows after it. Beyond these, records only fill the
store (about 27 KB a window for a devnet of six miners). Windows are counted back from the next
window to audit, so a validator that falls behind keeps what it has not judged yet, and never
past the quality book's last folded window, whose screens are still to be folded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from node.auditing.records import AuditRecords
from store import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Horizon:
    before: int
    """Records of windows before this one go."""
    fails_before: int
    """Failed verdicts of windows before this one go too."""


class AuditRetention:
    def __init__(
        self, records: AuditRecords, *, t_decay: int, penalty_windows: int, keep_windows: int
    ) -> None:
        """`keep_windows`: windows kept at least (e.g. for `/status`'s verdict timeline)."""
        self.records = records
        self.keep = max(t_decay, keep_windows) + 1
        self.keep_fails = max(self.keep, t_decay + penalty_windows + 1)
        self.pruned = 0
        """Records forgotten since the start."""
        self.failed = 0
        """Prunes the store refused (e.g. a full map: a delete copies pages too)."""

    def horizon(self, current: int) -> Horizon | None:
        """What may go at window `current` (None before the first audit)."""
        pending = self.records.next_window()
        if pending is None:
            return None
        anchor = min(pending, current)
        before = anchor - self.keep
        book = self.records.quality_book()
        if book is not None:
            before = min(before, int(book["window"]) + 1)
        return Horizon(before=before, fails_before=anchor - self.keep_fails)

    def prune(self, current: int | None) -> int:
        """Forget the records beyond the horizon at `current`; returns how many went (0 when
        the store refused: the records stay until the next tick)."""
        try:
            horizon = None if current is None else self.horizon(current)
            if horizon is None or horizon.before <= 0:
                return 0
            gone = self.records.prune(horizon.before, fails_before=horizon.fails_before)
        except StoreError as exc:
            self.failed += 1
            log.warning("audit records not pruned: %s", exc)
            return 0
        self.pruned += gone
        return gone
