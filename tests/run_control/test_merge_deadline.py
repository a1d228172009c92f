"""The stage merge's deadline, learned from merges every member completed."""

import pytest

from node.run_control.merge_deadline import MergeDeadline


def test_deadline_follows_complete_merges_within_its_clamps() -> None:
    d = MergeDeadline(max_s=60.0, min_s=5.0, k=10.0, alpha=0.5)
    assert d.seconds() == 60.0  # nothing learned yet
    d.observe(2.0, members=2, reported=2)
    assert d.seconds() == 20.0
    d.observe(0.1, members=2, reported=2)  # EWMA 1.05 s -> 10.5 s
    assert d.seconds() == pytest.approx(10.5)
    d.observe(30.0, members=2, reported=1)  # a member died: it waited, which teaches nothing
    assert d.seconds() == pytest.approx(10.5)
    for _ in range(20):
        d.observe(0.05, members=3, reported=3)
    assert d.seconds() == 5.0  # never under min_s
    d.observe(2.0, members=2, reported=0)  # nobody made it: maybe too short, start over
    assert d.seconds() == 60.0
    with pytest.raises(ValueError):
        MergeDeadline(max_s=5.0, min_s=10.0, k=1.0)
