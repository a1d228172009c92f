"""Merge figures: one stage of the `small` model merged among 2, 4 and 8 real nodes.

Each member is a real node (LMDB, libp2p host with its bulk lane, the miner role's merge book)
in one event loop on loopback. Every member holds the stage's seed parameters plus its own
perturbation (what a window of training would leave) and a weight; all run the merge at once
(`node.merging.runner`, exactly what a miner runs on MergeStart). `--busy` runs one CPU-burning
process per core beside it the whole time (an oversubscribed machine). Prints JSON, per member
count and exchange format:

  bytes_sent_per_member: payload bytes each member served, mean (contributions + reductions;
      `contribution_bytes_per_member` and `reduced_bytes_per_member` split it), and each
      divided by the stage's parameter bytes (`*_ratio`)
  seconds: wall time of the merge (all members concurrently, on this machine's cores)
  max_abs_diff: largest difference of any member's result from the exact weighted average
      (float64 accumulation of the full vectors), and `members_agree` (bitwise)
  disputes, reassigned: MergeDisputes raised and partitions a member had to check or take over
      (both 0 when every member is honest and the owners agree)
  fetches_retried, contributions_missing: transient fetch failures retried, and contributions
      an owner gave up on (left out of its reduction)

    python bench/merge.py --json
    python bench/merge.py --json --busy
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from scratch import scratch_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.busy_cpu import busy_cpu
from tests.merging.network_kit import Outcome, merge_among, start_miners, stop
from training.merge.layout import Layout
from training.merge.quantize import Format
from training.merge.state import seed_params
from training.presets import PRESETS
from training.run_spec import RunSpec


def row(outcome: Outcome, n: int, fmt: Format, base: torch.Tensor) -> dict[str, Any]:
    param_bytes = 4 * base.numel()
    sessions = outcome.sessions
    mean_sent = sum(s.counters["bytes_sent"] for s in sessions) / n
    mean_contrib = sum(s.counters["bytes_sent_contribution"] for s in sessions) / n
    counters = outcome.counters()
    return {
        "members": n,
        "format": fmt,
        "seconds": round(outcome.seconds, 3),
        "stage_param_bytes": param_bytes,
        "bytes_sent_per_member": mean_sent,
        "bytes_sent_ratio": round(mean_sent / param_bytes, 4),
        "contribution_bytes_per_member": mean_contrib,
        "contribution_ratio": round(mean_contrib / param_bytes, 4),
        "reduced_bytes_per_member": mean_sent - mean_contrib,
        "reduced_ratio": round((mean_sent - mean_contrib) / param_bytes, 4),
        "max_abs_diff": outcome.max_abs_diff,
        "members_agree": outcome.agree,
        "disputes": outcome.disputes,
        "reassigned": outcome.reassigned,
        "fetches_retried": counters["fetch_retried"],
        "contributions_missing": counters["contributions_missing"],
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    spec = RunSpec(model=args.model, vocab_size=PRESETS[args.model].vocab_size, n_stages=3)
    tensors = seed_params(spec, 1)
    base = Layout.of_tensors(tensors).flatten(tensors)
    rows = []
    window = 0
    for n in args.members:
        with scratch_dir(f"tessera-merge-bench-{n}-") as root:
            nodes, tasks = await start_miners(root, n)
            try:
                for fmt in args.formats:
                    window += 1
                    outcome = await merge_among(nodes, base, fmt, window)
                    rows.append(row(outcome, n, fmt, base))
            finally:
                await stop(tasks)
    return {"model": args.model, "stage": 1, "stage_params": base.numel(), "runs": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--model", default="small", choices=sorted(PRESETS))
    parser.add_argument("--members", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--formats", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--busy", action="store_true", help="one CPU burner per core beside it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    with contextlib.suppress(KeyboardInterrupt):
        burners = busy_cpu() if args.busy else contextlib.nullcontext(0)
        with burners as n_burners:
            result = asyncio.run(main_async(args))
        result["busy_processes"] = n_burners
        print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
