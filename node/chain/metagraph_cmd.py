"""`tessera metagraph`: a subnet's metagraph as a table (what `btcli subnet metagraph` shows).

From a devnet chain node (the URL of its status endpoint), or read-only from a bittensor
network (`--network test --netuid 9`) through `BittensorChain`. `--json` prints the records.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import urllib.error
from typing import Any

from node.chain.records import ChainError
from node.status_cmd import fetch_status

COLUMNS = (
    ("uid", "UID", "{:>4}"), ("stake", "STAKE", "{:>10.2f}"),
    ("validator_permit", "VPERMIT", "{!s:>7}"), ("incentive", "INCENTIVE", "{:>9.4f}"),
    ("dividends", "DIVIDENDS", "{:>9.4f}"), ("consensus", "CONSENSUS", "{:>9.4f}"),
    ("validator_trust", "VTRUST", "{:>7.4f}"), ("emission", "EMISSION", "{:>9.4f}"),
    ("last_update", "UPDATED", "{:>8}"), ("hotkey", "HOTKEY", "{:<48}"),
    ("endpoint", "ENDPOINT", "{}"),
)  # fmt: skip


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "metagraph",
        help="show a subnet's metagraph",
        description="Print a subnet's metagraph: from a devnet chain node's status URL, or from "
        "a bittensor network with --network and --netuid.",
    )
    p.add_argument("url", nargs="?", help="a devnet chain node's status URL")
    p.add_argument("--network", help="a bittensor network (test, finney, local, ws://…)")
    p.add_argument("--netuid", type=int, default=9)
    p.add_argument("--json", action="store_true", help="print JSON records instead")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=run)


def from_devnet(url: str, timeout: float) -> tuple[int, list[dict[str, Any]]]:
    section = fetch_status(url, timeout).get("chain")
    if not isinstance(section, dict) or "neurons" not in section:
        raise ValueError(f"{url} is not a devnet chain node (no chain section in its status)")
    return int(section["block"]), list(section["neurons"])


async def from_network(network: str, netuid: int) -> tuple[int, list[dict[str, Any]]]:
    from node.chain.bittensor_chain import BittensorChain

    client = BittensorChain(None, network=network)
    try:
        graph = await client.metagraph(netuid)
    finally:
        await client.close()
    return graph.block, [dataclasses.asdict(n) for n in graph.neurons]


def render(block: int, neurons: list[dict[str, Any]]) -> str:
    lines = [f"block {block}, {len(neurons)} uids", " ".join(h for _, h, _ in COLUMNS)]
    for n in neurons:
        lines.append(" ".join(fmt.format(n.get(key, "")) for key, _, fmt in COLUMNS).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if bool(args.url) == bool(args.network):
        print("tessera metagraph: give a chain node's URL or --network", file=sys.stderr)
        return 2
    try:
        if args.url:
            block, neurons = from_devnet(args.url, args.timeout)
        else:
            block, neurons = asyncio.run(from_network(args.network, args.netuid))
    except (urllib.error.URLError, OSError, ValueError, ChainError) as exc:
        print(f"tessera metagraph: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"block": block, "neurons": neurons}, indent=2))
    else:
        print(render(block, neurons))
    return 0
