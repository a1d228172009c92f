"""Heap trimming: freed memory fragmented inside glibc's heap goes back to the system."""

import ctypes.util
from pathlib import Path

import pytest

from node.memory_trim import trim_heap


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(
    ctypes.util.find_library("c") is None or not Path("/proc/self/status").exists(),
    reason="needs glibc and /proc",
)
def test_trim_returns_fragmented_free_heap_to_the_system() -> None:
    # 100 kB objects come from the heap (below malloc's mmap threshold); keeping every 16th
    # pins the heap's top so freeing the rest cannot shrink it by itself.
    held = [bytearray(100_000) for _ in range(2_000)]
    for block in held:
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    kept = held[::16]
    del held
    before = _rss_mib()
    assert trim_heap()
    after = _rss_mib()
    assert before - after > 100, (before, after)
    assert len(kept) == 125
