"""Per-peer exponential backoff with jitter for re-dialing (bootstrap peers and learned peers)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED = 4096


@dataclass(slots=True)
class _State:
    failures: int
    retry_at: float


class Backoff:
    """After the n-th consecutive failure a key waits a random delay in [d/2, d],
    d = min(initial * 2**(n-1), maximum); a success forgets the key."""

    def __init__(
        self,
        initial_s: float,
        maximum_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._initial, self._maximum = initial_s, maximum_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._states: dict[str, _State] = {}

    def ready(self, key: str) -> bool:
        state = self._states.get(key)
        return state is None or self._clock() >= state.retry_at

    def failed(self, key: str) -> float:
        """Record a failure; returns the delay before `key` is ready again."""
        state = self._states.pop(key, None) or _State(failures=0, retry_at=0.0)
        state.failures += 1
        ceiling = min(self._initial * 2 ** min(state.failures - 1, 60), self._maximum)
        delay = self._rng.uniform(ceiling / 2, ceiling)
        state.retry_at = self._clock() + delay
        self._states[key] = state  # re-inserted last: the dict stays oldest-first
        while len(self._states) > MAX_TRACKED:
            del self._states[next(iter(self._states))]
        return delay

    def succeeded(self, key: str) -> None:
        self._states.pop(key, None)
