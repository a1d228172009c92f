"""Stage assignment: which pipeline stage each eligible miner serves.

A pure function over (capacities, previous assignment). In order of priority it
1. keeps every miner whose previous stage is still valid (no needless moves),
2. places the other miners, largest capacity first, on the stage with the least total
   capacity that still has room (so an empty stage is always filled first),
3. covers any stage still empty by moving one miner away from a stage that has two or more.

Only step 3 (and a lowered `max_miners_per_stage`) moves a miner that had a stage, and step 3
moves exactly as many miners as there are stages the kept and new miners cannot cover, which is
the least any covering assignment needs. Ties are broken by stage index, then by peer id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(kw_only=True, slots=True)
class AssignmentConfig:
    """How miners are spread over the stages of the run's model split."""

    n_stages: int
    max_miners_per_stage: int | None = 1
    """Miners routed per stage; extra miners stay standbys (stage None) and are promoted when a
    stage loses its miner. Default 1 until the stage merge lands: two miners of one stage would
    train diverging weights with nothing to reconcile them. None means no limit."""

    def __post_init__(self) -> None:
        if self.n_stages < 1:
            raise ValueError(f"n_stages must be >= 1, got {self.n_stages}")
        if self.max_miners_per_stage is not None and self.max_miners_per_stage < 1:
            raise ValueError(f"max_miners_per_stage must be >= 1, got {self.max_miners_per_stage}")


def assign_stages(
    capacities: Mapping[str, float],
    previous: Mapping[str, int | None],
    config: AssignmentConfig,
) -> dict[str, int | None]:
    """The stage (or None for a standby) of every miner in `capacities`."""
    n, cap = config.n_stages, config.max_miners_per_stage
    groups: list[list[str]] = [[] for _ in range(n)]
    for peer in sorted(capacities):
        stage = previous.get(peer)
        if stage is not None and 0 <= stage < n:
            groups[stage].append(peer)
    if cap is not None:
        for stage, group in enumerate(groups):
            groups[stage] = sorted(group, key=lambda p: (-capacities[p], p))[:cap]
    kept = {p for group in groups for p in group}
    totals = [sum(capacities[p] for p in group) for group in groups]

    for peer in sorted(set(capacities) - kept, key=lambda p: (-capacities[p], p)):
        open_stages = [s for s in range(n) if cap is None or len(groups[s]) < cap]
        if not open_stages:
            break
        stage = min(open_stages, key=lambda s: (totals[s], s))
        groups[stage].append(peer)
        totals[stage] += capacities[peer]

    for empty in range(n):
        if groups[empty]:
            continue
        donors = [s for s in range(n) if len(groups[s]) >= 2]
        if not donors:
            break
        donor = max(donors, key=lambda s: (totals[s], -s))
        total = totals[donor]
        peer = min(groups[donor], key=lambda p: (abs(total - 2 * capacities[p]), p))
        groups[donor].remove(peer)
        groups[empty].append(peer)
        totals[donor] -= capacities[peer]
        totals[empty] += capacities[peer]

    result: dict[str, int | None] = dict.fromkeys(capacities)
    for stage, group in enumerate(groups):
        for peer in group:
            result[peer] = stage
    return result


def count_moves(before: Mapping[str, int | None], after: Mapping[str, int | None]) -> int:
    """Miners that had a stage before and now serve another stage or none (departures excluded)."""
    return sum(
        1
        for peer, stage in before.items()
        if stage is not None and peer in after and after[peer] != stage
    )
