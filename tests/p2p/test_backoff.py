"""Per-peer dial backoff: exponential growth, jitter bounds, cap, reset on success."""

from __future__ import annotations

import random

from p2p import backoff
from p2p.backoff import Backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_with_jitter_up_to_the_cap() -> None:
    clock = FakeClock()
    b = Backoff(0.5, 4.0, clock=clock, rng=random.Random(1))
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for ceiling in ceilings:
        delay = b.failed("peer")
        assert ceiling / 2 <= delay <= ceiling
    delays = {round(Backoff(1.0, 1.0, rng=random.Random(i)).failed("p"), 6) for i in range(20)}
    assert len(delays) > 10  # jittered, not a fixed schedule


def test_ready_after_delay_and_reset_on_success() -> None:
    clock = FakeClock()
    b = Backoff(1.0, 8.0, clock=clock)
    assert b.ready("peer")
    delay = b.failed("peer")
    assert not b.ready("peer") and b.ready("other")
    clock.now += delay
    assert b.ready("peer")
    b.failed("peer")
    b.succeeded("peer")
    assert b.ready("peer")
    assert b.failed("peer") <= 1.0  # back to the initial delay


def test_tracking_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(backoff, "MAX_TRACKED", 3)
    b = Backoff(1.0, 1.0, clock=FakeClock())
    for key in "abcde":
        b.failed(key)
    assert b.ready("a") and b.ready("b")  # oldest forgotten
    assert not b.ready("e")
