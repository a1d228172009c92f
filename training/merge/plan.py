"""The merge plan: a stage's vector cut into partitions, each with two owners and fallbacks.

A pure function of (run, window, stage, members, size), so every member computes the same plan
without talking to anyone. The members are shuffled by a seed derived from all of those; with n
members there are n partitions, partition i is owned by the shuffled members i and i + 1 (so
every member owns two partitions, each held twice), and the members after them, in shuffled
order, are the partition's fallback owners when both owners fail to deliver.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
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

    def source(self, member: str, p: Partition) -> str:
        """The owner `member` takes `p`'s bytes from (itself when it owns `p`); it takes only
        the digest from the other owner. The non-owners alternate between the owners, the first
        owner taking the odd one out; every member is the first owner of exactly one partition,
        so owners serve alike."""
        if member in p.owners:
            return member
        takers = [m for m in self.members if m not in p.owners]
        return p.owners[takers.index(member) % len(p.owners)]

    def bytes_sent(self, member: str, encoded: Callable[[int], int]) -> int:
        """Payload bytes `member` serves when every fetch succeeds once: its contribution to
        each partition's other owners, and its reductions to the members that take them from
        it. `encoded(numel)` is the exchange format's size of `numel` values."""
        total = 0
        for p in self.partitions:
            total += encoded(p.numel) * sum(1 for o in p.owners if o != member)
            if member in p.owners:
                takers = [m for m in self.members if m != member and self.source(m, p) == member]
                total += encoded(p.numel) * len(takers)
        return total


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
