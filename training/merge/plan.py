"""The merge plan: a stage's vector cut into partitions, each with two owners and fallbacks.

A pure function of (run, window, stage, members, size), so every member computes the same plan
without talking to anyone. The members are shuffled by a seed derived from all of those; with n
members there are n partitions, partition i is owned by the shuffled members i and i + 1 (so
every member owns two partitions, each held twice), and the members after them, in shuffled
order, are the partition's fallback owners when both owners fail to deliver.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

OWNERS = 2


@dataclass(frozen=True, slots=True)
class Partition:
    index: int
    start: int
    end: int
    candidates: tuple[str, ...]
    """Every member, in the order they take the partition on: the owners first."""

    @property
    def owners(self) -> tuple[str, ...]:
        return self.candidates[:OWNERS]

    @property
    def numel(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class MergePlan:
    run: str
    window: int
    stage: int
    members: tuple[str, ...]
    """Sorted peer ids."""
    size: int
    partitions: tuple[Partition, ...]

    def owned_by(self, peer: str) -> list[Partition]:
        return [p for p in self.partitions if peer in p.owners]


def seed(run: str, window: int, stage: int, members: Sequence[str]) -> int:
    text = "\n".join([run, str(window), str(stage), *sorted(members)])
    return int.from_bytes(blake3.blake3(text.encode()).digest()[:8], "big")


def make_plan(run: str, window: int, stage: int, members: Sequence[str], size: int) -> MergePlan:
    if len(set(members)) != len(members) or not members:
        raise ValueError(f"members must be distinct and non-empty: {list(members)}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    ordered = sorted(members)
    shuffled = list(ordered)
    random.Random(seed(run, window, stage, ordered)).shuffle(shuffled)
    n = len(shuffled)
    parts = min(n, size)
    bounds = [size * i // parts for i in range(parts + 1)]
    partitions = tuple(
        Partition(
            index=i,
            start=bounds[i],
            end=bounds[i + 1],
            candidates=tuple(shuffled[(i + k) % n] for k in range(n)),
        )
        for i in range(parts)
    )
    return MergePlan(run, window, stage, tuple(ordered), size, partitions)
