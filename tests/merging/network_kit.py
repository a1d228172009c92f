"""Merges among real miner nodes (LMDB, libp2p host with its bulk lane, the miner role's merge
book) in one event loop on loopback: for the merge regression tests and `bench/merge.py`.

Every member holds `base` plus its own perturbation (what a window of training leaves) and a
weight, and all run `node.merging.runner` at once, exactly as a miner does on MergeStart.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from node.merging.runner import MergeResult, MergeRunner
from node.merging.session import MergeSession, Served
from node.node_service import NodeService
from node.roles.miner import MinerComponent
from p2p.merge_messages import MergeDispute
from tests.node_kit import start_local_node
from tests.p2p.endpoint_kit import make_hotkey
from training.merge.plan import make_plan
from training.merge.quantize import Format, encode
from training.merge.reduce import Reduction, weighted_mean


async def start_miners(root: Path, n: int) -> tuple[list[NodeService], list[asyncio.Task[None]]]:
    """`n` miner nodes that have all admitted each other, and their tasks (cancel to stop)."""
    hotkeys = [make_hotkey(root / "wallets", f"m{i}") for i in range(n)]
    admitted = [h.ss58_address for h in hotkeys]
    nodes: list[NodeService] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for i in range(n):
            boot = nodes[0].p2p_addrs if nodes else []
            node, task = await start_local_node(
                root / f"m{i}", ["miner"], hotkeys[i], admitted, boot,
                **{"node.log_level": "warning"},
            )  # fmt: skip
            nodes.append(node)
            tasks.append(task)
        deadline = time.monotonic() + 60
        while not all(node.endpoint and len(node.endpoint.sessions) >= n - 1 for node in nodes):
            if time.monotonic() > deadline:
                raise TimeoutError("the nodes did not all admit each other")
            await asyncio.sleep(0.1)
    except BaseException:
        await stop(tasks)
        raise
    return nodes, tasks


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def miner(node: NodeService) -> MinerComponent:
    return next(r for r in node._roles if isinstance(r, MinerComponent))


@dataclass
class Outcome:
    seconds: float
    results: list[MergeResult]
    sessions: list[MergeSession]
    exact: torch.Tensor
    """The float64-accumulated weighted mean of the members' full vectors."""

    @property
    def max_abs_diff(self) -> float:
        return max(float((r.values - self.exact).abs().max()) for r in self.results)

    @property
    def agree(self) -> bool:
        return all(torch.equal(self.results[0].values, r.values) for r in self.results)

    @property
    def disputes(self) -> int:
        return sum(len(r.disputes) for r in self.results)

    @property
    def reassigned(self) -> int:
        return sum(r.reassigned for r in self.results)

    def counters(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for s in self.sessions:
            total.update(s.counters)
        return total


async def merge_among(
    nodes: list[NodeService],
    base: torch.Tensor,
    fmt: Format,
    window: int,
    *,
    deadline_s: float = 120.0,
) -> Outcome:
    """One merge of stage 1 among `nodes`, each holding `base` plus a seeded perturbation."""
    n = len(nodes)
    g = torch.Generator().manual_seed(window)
    local = [base + 0.01 * torch.randn(base.numel(), generator=g) for _ in range(n)]
    ids = [node.endpoint.peer_id for node in nodes if node.endpoint is not None]
    weights = {p: float(i + 1) for i, p in enumerate(ids)}
    plan = make_plan("devnet", window, 1, ids, base.numel())
    sessions = []
    for node, vec, me in zip(nodes, local, ids, strict=True):
        values = vec if fmt == "fp32" else vec - base
        parts = [Served(encode(fmt, values[p.start : p.end]), [me]) for p in plan.partitions]
        session = MergeSession(
            plan=plan, me=me, fmt=fmt, weights=weights, how=Reduction(), contributions=parts,
            start=None if fmt == "fp32" else base,
        )  # fmt: skip
        miner(node).merges.book.add(session)
        sessions.append(session)

    async def report(_: MergeDispute) -> None:
        return None

    started = time.perf_counter()
    results: list[MergeResult] = await asyncio.gather(
        *(
            MergeRunner(node.endpoint, s, deadline_s=deadline_s, report=report).run()  # type: ignore[arg-type]
            for node, s in zip(nodes, sessions, strict=True)
        )
    )
    seconds = time.perf_counter() - started
    order = sorted(range(n), key=lambda i: ids[i])
    exact = weighted_mean([local[i] for i in order], [weights[ids[i]] for i in order])
    return Outcome(seconds, results, sessions, exact)
