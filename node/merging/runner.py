"""One member's side of a stage merge: reduce the partitions it owns, collect every partition
from both its owners, check the replicas, take over what is missing, assemble the result.

Time is split from the merge's deadline D: owners gather contributions until 0.4·D (a member
that has not answered by then is left out of the average), members wait for owners' replicas
until 0.6·D, and the rest is for checking and taking over. A partition is settled by
- both replicas equal (same digest, same contributors): taken;
- replicas that differ, or one missing: each delivered replica is checked by recomputing it here
  from the contributions of the members *it* names. A replica that differs from its own
  recomputation is wrong, and a signed `MergeDispute` names its owner. Of the replicas that check
  out, the one with the most contributors is taken (ties: the smaller digest), so every member
  that saw the same replicas takes the same one;
- no replica that checks out: this member reduces the partition itself from every contribution
  it can reach (the partition is reassigned to it).
An owner that was slow and left a member out of its gather is not wrong: its replica matches
the recomputation over the members it names. Only a reduction that no honest owner could have
produced from the contributions it claims is disputed, so slowness never turns into a dispute.
All reductions are deterministic, so honest owners given the same contributions agree bitwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import torch

from node.merging.exchange import fetch_part
from node.merging.session import CONTRIBUTION, DIGEST, REDUCED, MergeSession, Served
from p2p.endpoint import Endpoint
from p2p.merge_messages import MergeDispute
from training.merge.plan import Partition
from training.merge.quantize import decode, encode
from training.merge.reduce import reduce

log = logging.getLogger(__name__)
GATHER, REPLICAS = 0.4, 0.6
"""Fractions of the deadline for the owners' gather and the members' wait for replicas."""

Report = Callable[[MergeDispute], Awaitable[None]]


@dataclass(slots=True)
class MergeResult:
    values: torch.Tensor
    """The reduced vector (the weighted average of the members' parameters, before any outer
    step)."""
    contributors: list[str]
    disputes: list[MergeDispute] = field(default_factory=list)
    reassigned: int = 0


class MergeRunner:
    def __init__(
        self, endpoint: Endpoint, session: MergeSession, *, deadline_s: float, report: Report
    ) -> None:
        self._ep = endpoint
        self.s = session
        self._deadline_s = deadline_s
        self._report = report
        self._t0 = 0.0

    def _at(self, fraction: float) -> float:
        return self._t0 + fraction * self._deadline_s

    async def run(self) -> MergeResult:
        self._t0 = asyncio.get_running_loop().time()
        plan = self.s.plan
        owning = [asyncio.create_task(self._own(p)) for p in plan.owned_by(self.s.me)]
        try:
            settled = await asyncio.gather(*(self._settle(p) for p in plan.partitions))
        finally:
            for task in owning:
                task.cancel()
            await asyncio.gather(*owning, return_exceptions=True)
        values = torch.cat([self._values(p, served) for p, (served, _) in zip(
            plan.partitions, settled, strict=True)])  # fmt: skip
        contributors = sorted(set.intersection(*(set(s.contributors) for s, _ in settled)))
        result = MergeResult(values, contributors)
        for _, (reassigned, dispute) in settled:
            result.reassigned += reassigned
            if dispute is not None:
                result.disputes.append(dispute)
        return result

    # owning -------------------------------------------------------------------------------

    async def _own(self, p: Partition) -> None:
        served = await self._reduce(p, until=self._at(GATHER))
        if served is None:
            log.warning("merge partition %s: no contribution arrived", p.index)
            return
        if self.s.corrupt:
            wrong = decode(self.s.fmt, served.data, p.numel) * 1.5 + 1e-3
            served = Served(encode(self.s.fmt, wrong), served.contributors)
        self.s.set_reduced(p.index, served)

    async def _reduce(
        self, p: Partition, *, until: float, among: list[str] | None = None
    ) -> Served | None:
        """Gather the contributions to `p` of every weighted member (or exactly of `among`, else
        None) and reduce them."""
        s = self.s
        members = [m for m in s.plan.members if s.weights.get(m, 0.0) > 0]
        if among is not None:
            members = [m for m in members if m in among]

        async def one(member: str) -> Served | None:
            if member == s.me:
                return s.contributions[p.index]
            return await fetch_part(self._ep, s, member, p.index, CONTRIBUTION, until=until)

        got = await asyncio.gather(*(one(m) for m in members))
        delivered = [(m, c) for m, c in zip(members, got, strict=True) if c is not None]
        if not delivered or (among is not None and len(delivered) < len(members)):
            return None
        dropped = len(members) - len(delivered)
        s.counters["contributions_missing"] += dropped
        tensors = [decode(s.fmt, c.data, p.numel) for _, c in delivered]
        weights = [s.weights[m] for m, _ in delivered]
        reduced = await asyncio.to_thread(reduce, tensors, weights, s.how)
        return Served(encode(s.fmt, reduced), sorted(m for m, _ in delivered))

    # settling -----------------------------------------------------------------------------

    async def _replica(self, p: Partition, owner: str, *, full: bool) -> Served | None:
        until = self._at(REPLICAS)
        if owner == self.s.me:
            event = self.s.ready[p.index]
            try:
                left = until - asyncio.get_running_loop().time()
                await asyncio.wait_for(event.wait(), max(left, 0.0))
            except TimeoutError:
                return None
            return self.s.reduced.get(p.index)
        kind = REDUCED if full else DIGEST
        return await fetch_part(self._ep, self.s, owner, p.index, kind, until=until)

    async def _settle(self, p: Partition) -> tuple[Served, tuple[int, MergeDispute | None]]:
        owners = p.owners
        source = self.s.plan.source(self.s.me, p)
        replicas = await asyncio.gather(*(self._replica(p, o, full=o == source) for o in owners))
        present = [(o, r) for o, r in zip(owners, replicas, strict=True) if r is not None]
        full = next((r for o, r in present if o == source), None)
        if len(present) == len(owners) and len({_kind(r) for _, r in present}) == 1 and full:
            return full, (0, None)
        self.s.counters["partitions_checked"] += 1
        checked = await self._check(p, present)
        wrong = [o for o, r in present if _kind(r) in checked and not checked[_kind(r)][1]]
        good = [v for v, ok in checked.values() if ok and v is not None]
        if good:
            chosen = min(good, key=lambda v: (-len(v.contributors), v.digest))
        else:
            self.s.counters["partitions_taken_over"] += 1
            taken = await self._reduce(p, until=self._at(1.0))
            if taken is None:
                raise TimeoutError(f"partition {p.index}: no contribution reachable")
            chosen = taken
        dispute = None
        if wrong:
            first = checked[_kind(next(r for o, r in present if o == wrong[0]))][0]
            evidence = first.digest if first is not None else chosen.digest
            dispute = await self._dispute(p, present, wrong, evidence)
        return chosen, (1, dispute)

    async def _check(
        self, p: Partition, present: list[tuple[str, Served]]
    ) -> dict[tuple[bytes, tuple[str, ...]], tuple[Served | None, bool]]:
        """Each distinct delivered replica against its recomputation over the members it names:
        (the recomputation, whether the replica equals it); None for a replica wrong on its face.
        A replica whose contributions cannot all be reached is left out (neither taken nor
        disputed)."""
        out: dict[tuple[bytes, tuple[str, ...]], tuple[Served | None, bool]] = {}
        for owner, replica in present:
            kind = _kind(replica)
            if kind in out:
                continue
            if owner == self.s.me and not self.s.corrupt:
                out[kind] = (replica, True)  # our own reduction
                continue
            weighted = {m for m in self.s.plan.members if self.s.weights.get(m, 0.0) > 0}
            if not replica.contributors or not set(replica.contributors) <= weighted:
                out[kind] = (None, False)  # names no one, or someone outside the merge
                continue
            again = await self._reduce(p, until=self._at(1.0), among=replica.contributors)
            if again is not None:
                out[kind] = (again, again.digest == replica.digest)
        return out

    async def _dispute(
        self, p: Partition, present: list[tuple[str, Served]], wrong: list[str], recomputed: bytes
    ) -> MergeDispute:
        """Report `wrong` owners; `recomputed` is the reduction their replica should have been
        (over the contributors it names)."""
        self.s.counters["disputes"] += 1
        dispute = MergeDispute(
            window=self.s.plan.window,
            stage=self.s.plan.stage,
            part=p.index,
            owners=[o for o, _ in present],
            digests=[r.digest for _, r in present],
            recomputed=recomputed,
            wrong=wrong,
        )
        log.warning("merge partition %s: owners %s served a wrong reduction", p.index, wrong)
        await self._report(dispute)
        return dispute

    def _values(self, p: Partition, served: Served) -> torch.Tensor:
        values = decode(self.s.fmt, served.data, p.numel)
        if self.s.fmt == "fp32":
            return values
        assert self.s.start is not None
        return self.s.start[p.start : p.end] + values


def _kind(replica: Served) -> tuple[bytes, tuple[str, ...]]:
    """What makes two replicas the same reduction: the digest and the contributors named."""
    return replica.digest, tuple(replica.contributors)
