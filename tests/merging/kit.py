"""Test kit: merge members as real endpoints on a memory network, each with its own session."""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import torch

from node.merging.runner import MergeResult, MergeRunner
from node.merging.session import MergeBook, MergeSession, Served
from p2p.memory_transport import MemoryNetwork
from p2p.merge_messages import MergeDispute
from tests.p2p.endpoint_kit import Node, allow, make_hotkey, make_node
from training.merge.plan import make_plan
from training.merge.quantize import Format, encode
from training.merge.reduce import Reduction


@dataclass
class Member:
    node: Node
    book: MergeBook
    disputes: list[MergeDispute] = field(default_factory=list)

    @property
    def peer_id(self) -> str:
        return self.node.key.peer_id


def members(path: Path, n: int) -> list[Member]:
    hotkeys = [make_hotkey(path, f"m{i}") for i in range(n)]
    network = MemoryNetwork()
    policy = allow(*hotkeys)
    nodes = [make_node(network, hk, policy) for hk in hotkeys]
    return [Member(node, MergeBook(node.endpoint)) for node in nodes]


def vectors(n: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=g) for _ in range(n)]


def session(
    member: Member,
    group: list[Member],
    local: torch.Tensor,
    weights: dict[str, float],
    *,
    fmt: Format = "fp32",
    start: torch.Tensor | None = None,
    corrupt: bool = False,
    how: Reduction | None = None,
    window: int = 1,
) -> MergeSession:
    plan = make_plan("run-test", window, 0, [m.peer_id for m in group], local.numel())
    values = local if fmt == "fp32" else local - start  # type: ignore[operator]
    contributions = [
        Served(encode(fmt, values[p.start : p.end]), [member.peer_id]) for p in plan.partitions
    ]
    return MergeSession(
        plan=plan,
        me=member.peer_id,
        fmt=fmt,
        weights=weights,
        how=how or Reduction(),
        contributions=contributions,
        start=start,
        corrupt=corrupt,
    )


async def run_all(
    pairs: list[tuple[Member, MergeSession]], *, deadline_s: float = 10.0
) -> list[MergeResult | BaseException]:
    async def one(member: Member, s: MergeSession) -> MergeResult:
        member.book.add(s)

        async def report(d: MergeDispute) -> None:
            member.disputes.append(d)

        runner = MergeRunner(member.node.endpoint, s, deadline_s=deadline_s, report=report)
        return await runner.run()

    return await asyncio.gather(*(one(m, s) for m, s in pairs), return_exceptions=True)
