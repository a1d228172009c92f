"""Merge figures: one stage of the `small` model merged among 2, 4 and 8 real nodes.

Each member is a real node (LMDB, libp2p host with its bulk lane, the miner role's merge book)
in one event loop on loopback. Every member holds the stage's seed parameters plus its own
perturbation (what a window of training would leave) and a weight; all run the merge at once
(`node.merging.runner`, exactly what a miner runs on MergeStart). Prints JSON, per member count
and exchange format:

  bytes_sent_per_member: payload bytes each member served, mean (contributions + reductions;
      `contribution_bytes_per_member` and `reduced_bytes_per_member` split it), and each
      divided by the stage's parameter bytes (`*_ratio`)
  seconds: wall time of the merge (all members concurrently, on this machine's cores)
  max_abs_diff: largest difference of any member's result from the exact weighted average
      (float64 accumulation of the full vectors), and `members_agree` (bitwise)

    python bench/merge.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.merging.runner import MergeResult, MergeRunner
from node.merging.session import MergeSession, Served
from node.node_service import NodeService
from node.roles.miner import MinerComponent
from p2p.merge_messages import MergeDispute
from training.merge.layout import Layout
from training.merge.plan import make_plan
from training.merge.quantize import Format, encode
from training.merge.reduce import Reduction, weighted_mean
from training.merge.state import seed_params
from training.presets import PRESETS
from training.run_spec import RunSpec


async def start_nodes(root: Path, n: int) -> tuple[list[NodeService], list[asyncio.Task[None]]]:
    from tests.node_kit import start_local_node
    from tests.p2p.endpoint_kit import make_hotkey

    hotkeys = [make_hotkey(root / "wallets", f"m{i}") for i in range(n)]
    nodes: list[NodeService] = []
    tasks: list[asyncio.Task[None]] = []
    admitted = [h.ss58_address for h in hotkeys]
    for i in range(n):
        boot = nodes[0].p2p_addrs if nodes else []
        node, task = await start_local_node(
            root / f"m{i}", ["miner"], hotkeys[i], admitted, boot, **{"node.log_level": "warning"}
        )
        nodes.append(node)
        tasks.append(task)
    deadline = time.monotonic() + 60
    while not all(len(n_.endpoint.sessions) >= n - 1 for n_ in nodes if n_.endpoint):
        if time.monotonic() > deadline:
            raise TimeoutError("the nodes did not all admit each other")
        await asyncio.sleep(0.1)
    return nodes, tasks


def miner(node: NodeService) -> MinerComponent:
    return next(r for r in node._roles if isinstance(r, MinerComponent))


async def merge_once(
    nodes: list[NodeService], base: torch.Tensor, fmt: Format, window: int
) -> dict[str, Any]:
    n = len(nodes)
    g = torch.Generator().manual_seed(window)
    local = [base + 0.01 * torch.randn(base.numel(), generator=g) for _ in range(n)]
    ids = [n_.endpoint.peer_id for n_ in nodes if n_.endpoint is not None]
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
            MergeRunner(node.endpoint, s, deadline_s=120.0, report=report).run()  # type: ignore[arg-type]
            for node, s in zip(nodes, sessions, strict=True)
        )
    )
    seconds = time.perf_counter() - started
    order = sorted(range(n), key=lambda i: ids[i])
    exact = weighted_mean([local[i] for i in order], [weights[ids[i]] for i in order])
    param_bytes = 4 * base.numel()
    sent = [s.counters["bytes_sent"] for s in sessions]
    contrib = [s.counters["bytes_sent_contribution"] for s in sessions]
    mean_sent = sum(sent) / n
    mean_contrib = sum(contrib) / n
    return {
        "members": n,
        "format": fmt,
        "seconds": round(seconds, 3),
        "stage_param_bytes": param_bytes,
        "bytes_sent_per_member": mean_sent,
        "bytes_sent_ratio": round(mean_sent / param_bytes, 4),
        "contribution_bytes_per_member": mean_contrib,
        "contribution_ratio": round(mean_contrib / param_bytes, 4),
        "reduced_bytes_per_member": mean_sent - mean_contrib,
        "reduced_ratio": round((mean_sent - mean_contrib) / param_bytes, 4),
        "max_abs_diff": max(float((r.values - exact).abs().max()) for r in results),
        "members_agree": all(torch.equal(results[0].values, r.values) for r in results),
        "disputes": sum(len(r.disputes) for r in results),
        "reassigned": sum(r.reassigned for r in results),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    spec = RunSpec(model=args.model, vocab_size=PRESETS[args.model].vocab_size, n_stages=3)
    tensors = seed_params(spec, 1)
    base = Layout.of_tensors(tensors).flatten(tensors)
    rows = []
    window = 0
    for n in args.members:
        root = Path(tempfile.mkdtemp(prefix=f"tessera-merge-bench-{n}-"))
        nodes, tasks = await start_nodes(root, n)
        try:
            for fmt in args.formats:
                window += 1
                rows.append(await merge_once(nodes, base, fmt, window))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {"model": args.model, "stage": 1, "stage_params": base.numel(), "runs": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--model", default="small", choices=sorted(PRESETS))
    parser.add_argument("--members", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--formats", nargs="+", default=["fp32", "bf16", "int8"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(main_async(args))
        print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
