"""Per-peer guards: replay protection by sequence window, clock-skew staleness, and rate limits."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from p2p.refusals import Reason, Refused


@dataclass(kw_only=True, slots=True)
class LimitsConfig:
    max_skew_s: float = 30.0
    """A message whose timestamp is further than this from our clock is stale."""
    replay_window: int = 4096
    """How far below a sender's highest sequence number a late message is still accepted."""
    max_inflight_bytes_per_peer: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_skew_s <= 0 or self.replay_window < 1 or self.max_inflight_bytes_per_peer < 1:
            raise ValueError("p2p limits must be positive")


class ReplayGuard:
    """Accept each (sender, seq) once: seq above the sender's high mark, or unseen within window.

    Senders number messages from a microsecond clock, so restarts stay monotonic. Messages may
    arrive out of order over parallel streams, hence a window rather than strict ordering.
    """

    def __init__(self, config: LimitsConfig, *, max_senders: int = 10_000) -> None:
        self._config = config
        self._max_senders = max_senders
        self._state: OrderedDict[str, tuple[int, set[int]]] = OrderedDict()

    def check(self, sender: str, seq: int, ts: float, now: float) -> None:
        if abs(now - ts) > self._config.max_skew_s:
            raise Refused(Reason.STALE, f"timestamp {ts:.0f} is {now - ts:+.0f}s from ours")
        high, seen = self._state.get(sender, (-1, set()))
        window = self._config.replay_window
        if seq <= high - window or seq in seen:
            raise Refused(Reason.REPLAY, f"sequence {seq} already used or too old")

    def commit(self, sender: str, seq: int) -> None:
        """Mark (sender, seq) used; call only after the signature verified."""
        high, seen = self._state.pop(sender, (-1, set()))
        seen.add(seq)
        high = max(high, seq)
        if len(seen) > 2 * self._config.replay_window:
            floor = high - self._config.replay_window
            seen = {s for s in seen if s > floor}
        self._state[sender] = (high, seen)
        if len(self._state) > self._max_senders:
            self._state.popitem(last=False)


class RateLimiter:
    """Token buckets per (peer, message type)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, int], tuple[float, float]] = {}

    def allow(self, peer: str, type_id: int, rate: float, burst: int, now: float) -> bool:
        tokens, last = self._buckets.get((peer, type_id), (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[(peer, type_id)] = (tokens, now)
            return False
        self._buckets[(peer, type_id)] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        return True
