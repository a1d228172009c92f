"""Chaos benchmark: a devnet trained under a seeded schedule of crashes and bad conditions.

A multi-process devnet (tiny model, 3 stages x 2 miners, a validator; no chain) trains
`--windows` windows while a schedule drawn from `--seed` kills nodes with SIGKILL and restarts
them on the same home: a random miner `--miner-kills` times, the validator `--validator-kills`
times, the orchestrator `--orchestrator-kills` times (the first one while a stage merge runs).
Meanwhile miner4 loses or delays 5 % of its requests (`--fault flaky-net:0.05`) and miner5 runs
on a small LMDB map (`--small-map-mib`), whose blob budget makes it evict its evidence early.

Before each kill the receipts the orchestrator acknowledged and the verdicts the validator
signed are read from their LMDB stores; after the restart, and at the end, each must still be
there. For each kill it measures the seconds from the restart until the run makes progress again
(a batch completes or the window advances), also in lease periods of the moment.

Prints one JSON object: `completed`, `windows`, `loss_first`, `loss_last`, `kills` (each with its
node, window, whether a merge ran, recovery seconds and lease periods), `max_recovery_leases`,
`lost_receipts`, `lost_verdicts`, `receipts_checked`, `verdicts_checked`, `audits` (verdict counts
and the conclusive share), `survivors_up` (no node that was not killed exited, and every node
runs at the end).

    python bench/chaos.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lmdb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from node.devnet.net import Devnet, DevnetPlan  # noqa: E402
from node.devnet.procs import DevnetNode  # noqa: E402

TINY_RUN: dict[str, Any] = {
    "model": "tiny", "vocab_size": 512, "batch_size": 4, "seq_len": 64,
    "batches_per_window": 16, "accumulate": 2, "lr": 0.004, "code_max_bytes": 1_000_000,
    "prose_max_bytes": 1_000_000, "math_documents": 500,
}  # fmt: skip
LEASE = {"k": 8.0, "min_s": 2.0, "max_s": 8.0}
SETS = [
    *(f"orchestrator.leases.{k}={v}" for k, v in LEASE.items()),
    "orchestrator.leases.initial_hop_s=1.0",
    "orchestrator.registry.suspect_after_s=5.0",
    "orchestrator.registry.gone_after_s=10.0",
    "orchestrator.close_timeout_s=10.0",
    "orchestrator.eval_batches=1",
    "p2p.backoff_max_s=1.0",
    "p2p.peer_exchange_interval_s=0.5",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--windows", type=int, default=14)
    p.add_argument("--miner-kills", type=int, default=4)
    p.add_argument("--validator-kills", type=int, default=2)
    p.add_argument("--orchestrator-kills", type=int, default=2)
    p.add_argument("--down-s", type=float, default=2.0, help="seconds a killed node stays down")
    p.add_argument("--small-map-mib", type=int, default=24, help="miner5's store.map_size_mib")
    p.add_argument("--timeout", type=float, default=1500.0)
    p.add_argument("--home", type=Path, help="keep the devnet here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    return p.parse_args(argv)


def lmdb_keys(home: Path, table: str, prefix: str) -> set[bytes]:
    """Keys under `prefix` in a node's store, read from its LMDB files (the node may run)."""
    path = home / "store"
    if not (path / "data.mdb").exists():
        return set()
    env = lmdb.open(str(path), readonly=True, lock=True, max_dbs=64, subdir=True)
    try:
        db = env.open_db(table.encode(), create=False)
        with env.begin(db=db) as txn:
            cursor = txn.cursor()
            found = set()
            if cursor.set_range(prefix.encode()):
                for key in cursor.iternext(values=False):
                    if not key.startswith(prefix.encode()):
                        break
                    found.add(bytes(key))
            return found
    finally:
        env.close()


class Chaos:
    def __init__(self, net: Devnet, args: argparse.Namespace) -> None:
        self.net, self.args = net, args
        self.receipts: set[bytes] = set()
        self.verdicts: set[bytes] = set()
        self.lost_receipts = 0
        self.lost_verdicts = 0
        self.killed: set[str] = set()

    async def section(self) -> dict[str, Any]:
        doc = await self.net.orchestrator.status()
        section = (doc or {}).get("orchestrator")
        return section if isinstance(section, dict) else {}

    async def wait(self, check: Any, timeout: float, poll: float = 0.1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            section = await self.section()
            if section and check(section):
                return section
            self.check_survivors()
            await asyncio.sleep(poll)
        raise TimeoutError

    def check_survivors(self) -> None:
        for node in self.net.nodes:
            if node.name not in self.killed and not node.running:
                raise SystemExit(f"bench: {node.name} exited ({node.returncode}); see its log")

    def acknowledged(self) -> None:
        """Everything the orchestrator and validator hold now, to be found after the kill."""
        self.receipts |= lmdb_keys(self.net.orchestrator.home, "receipts", "devnet/b/")
        for validator in self.net.validators:
            self.verdicts |= lmdb_keys(validator.home, "audits", "devnet/v/")

    def lost(self) -> tuple[int, int]:
        receipts = lmdb_keys(self.net.orchestrator.home, "receipts", "devnet/b/")
        verdicts: set[bytes] = set()
        for validator in self.net.validators:
            verdicts |= lmdb_keys(validator.home, "audits", "devnet/v/")
        return len(self.receipts - receipts), len(self.verdicts - verdicts)

    async def kill(self, node: DevnetNode, window: int, merge: bool) -> dict[str, Any]:
        section = await self.wait(lambda s: s.get("window", 0) >= window, 600)
        if merge:  # catch a stage merge in the act
            try:
                section = await self.wait(lambda s: s.get("phase") == "merge", 120, poll=0.02)
            except TimeoutError:
                merge = False
        hop = max((s.get("hop_s") or 0.0) for s in section.get("stages", [{}]))
        lease_s = min(LEASE["max_s"], max(LEASE["min_s"], LEASE["k"] * hop))
        before = (section.get("window", 0), (section.get("progress") or {}).get("batches", 0))
        self.acknowledged()
        self.killed.add(node.name)
        killed_at = time.monotonic()
        await node.kill()
        await asyncio.sleep(self.args.down_s)
        await node.restart(timeout=90.0)
        up_at = time.monotonic()
        self.killed.discard(node.name)

        def moved(s: dict[str, Any]) -> bool:
            batches = (s.get("progress") or {}).get("batches", 0)
            return s.get("window", 0) > before[0] or batches > before[1] or bool(s.get("done"))

        await self.wait(moved, 600)
        recovered_at = time.monotonic()
        lost = self.lost()
        self.lost_receipts += lost[0]
        self.lost_verdicts += lost[1]
        return {
            "node": node.name,
            "window": before[0],
            "during_merge": merge,
            "recovery_s_since_kill": round(recovered_at - killed_at, 2),
            "recovery_s_since_restart": round(recovered_at - up_at, 2),
            "lease_s": round(lease_s, 2),
            "recovery_leases": round((recovered_at - up_at) / lease_s, 2),
            "lost_receipts": lost[0],
            "lost_verdicts": lost[1],
        }


def schedule(args: argparse.Namespace, net: Devnet) -> list[tuple[DevnetNode, int, bool]]:
    rng = random.Random(args.seed)
    events: list[tuple[DevnetNode, bool]] = [
        (rng.choice(net.miners), False) for _ in range(args.miner_kills)
    ]
    events += [(rng.choice(net.validators), False) for _ in range(args.validator_kills)]
    events += [(net.orchestrator, i == 0) for i in range(args.orchestrator_kills)]
    rng.shuffle(events)
    span = max(args.windows - 4, 1)
    return [
        (node, 1 + (i * span) // max(len(events), 1), merge)
        for i, (node, merge) in enumerate(events)
    ]


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    plan = DevnetPlan(
        stages=3,
        validators=1,
        windows=args.windows,
        run=dict(TINY_RUN),
        sets=list(SETS),
        faults=["", "", "", "", "flaky-net:0.05"],
        per_node={"miner5": [f"store.map_size_mib={args.small_map_mib}"]},
    )
    net = Devnet(root, plan, quiet=True)
    started = time.monotonic()
    try:
        await net.start(timeout=90.0)
        chaos = Chaos(net, args)
        kills = [
            await chaos.kill(node, window, merge) for node, window, merge in schedule(args, net)
        ]
        remaining = args.timeout - (time.monotonic() - started)
        done = await chaos.wait(lambda s: bool(s.get("done")), max(remaining, 60), poll=0.5)
        await asyncio.sleep(15)  # the validator audits the last windows
        chaos.acknowledged()
        lost_receipts, lost_verdicts = chaos.lost()
        validator = await net.validators[0].status() or {}
        verdicts = {"pass": 0, "fail": 0, "inconclusive": 0}  # from its LMDB, across restarts
        for counts in ((validator.get("validator") or {}).get("audited") or {}).values():
            for outcome, n in counts.items():
                verdicts[outcome] = verdicts.get(outcome, 0) + n
        survivors = all(node.running for node in net.nodes)
    finally:
        await net.stop(timeout=10.0)
    history = done.get("history") or []
    total = sum(verdicts.values())
    return {
        "seed": args.seed,
        "completed": bool(done.get("done")),
        "windows": len(history),
        "loss_first": history[0]["loss"] if history else None,
        "loss_last": history[-1]["loss"] if history else None,
        "kills": kills,
        "max_recovery_leases": max((k["recovery_leases"] for k in kills), default=0.0),
        "lost_receipts": chaos.lost_receipts + lost_receipts,
        "lost_verdicts": chaos.lost_verdicts + lost_verdicts,
        "receipts_checked": len(chaos.receipts),
        "verdicts_checked": len(chaos.verdicts),
        "audits": {
            **verdicts,
            "conclusive_share": round(1 - verdicts.get("inconclusive", 0) / total, 3)
            if total
            else None,
        },
        "survivors_up": survivors,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.home:
        result = asyncio.run(run(args, args.home))
    else:
        with tempfile.TemporaryDirectory(prefix="tessera-chaos-") as tmp:
            result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
