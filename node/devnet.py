"""`tessera devnet`: an orchestrator, validators and miners as separate processes on loopback.

Each node gets a fresh home (key, test wallet and hotkey binding), serves HTTP on a free port and
bootstraps to the orchestrator; peer exchange then connects everyone. Ctrl-C (or SIGTERM) stops
every node with one SIGTERM each and waits for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from node.devnet_procs import DevnetNode, NodeSpec, all_admitted, fetch_statuses, print_table


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "devnet",
        help="run a local network on loopback",
        description="Start an orchestrator, validators and miners as separate processes on "
        "loopback, wait until they all see each other, and keep them running until Ctrl-C.",
    )
    p.add_argument(
        "--home", type=Path, help="root for the nodes' homes (default: a fresh temp dir)"
    )
    p.add_argument("--miners", type=int, default=3, help="number of miner nodes")
    p.add_argument("--validators", type=int, default=1, help="number of validator nodes")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for every node to admit every other",
    )
    p.add_argument(
        "--exit-when-connected",
        action="store_true",
        help="stop the network and exit 0 once every node has admitted every other",
    )
    p.set_defaults(func=run)


def specs(miners: int, validators: int) -> list[NodeSpec]:
    out = [NodeSpec(name="orchestrator", role="orchestrator")]
    out += [NodeSpec(name=f"validator{i}", role="validator") for i in range(validators)]
    out += [NodeSpec(name=f"miner{i}", role="miner") for i in range(miners)]
    return out


async def run_devnet(root: Path, args: argparse.Namespace) -> int:
    nodes = [DevnetNode(spec, root) for spec in specs(args.miners, args.validators)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"devnet: homes under {root}")
    try:
        hotkeys = [node.prepare_identity() for node in nodes]
        admission = [
            "--set",
            'admission.mode="allowlist"',
            "--set",
            f"admission.hotkeys={json.dumps(hotkeys)}",
        ]
        orchestrator, *others = nodes
        await orchestrator.start(bootstrap=[], extra_args=admission)
        for node in others:
            await node.start(bootstrap=orchestrator.endpoints["p2p"], extra_args=admission)
        deadline = loop.time() + args.connect_timeout
        while not stop.is_set():
            statuses = await fetch_statuses(nodes)
            if all_admitted(statuses):
                break
            if loop.time() > deadline:
                print_table(nodes, statuses)
                print("devnet: nodes did not all admit each other in time", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)
        else:
            return 0
        print_table(nodes, statuses)
        if args.exit_when_connected:
            print("devnet: every node has admitted every other; stopping")
            return 0
        print("devnet: up. `tessera status URL` shows a node; Ctrl-C stops the network.")
        while not stop.is_set():
            dead = [n for n in nodes if n.returncode is not None]
            if dead:
                for node in dead:
                    print(
                        f"devnet: {node.spec.name} exited with {node.returncode}; "
                        f"log: {node.log_path}",
                        file=sys.stderr,
                    )
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
        return 0
    finally:
        print("devnet: stopping nodes")
        codes = await asyncio.gather(*(node.stop(timeout=10.0) for node in nodes))
        for node, code in zip(nodes, codes, strict=True):
            if code not in (0, None):
                print(
                    f"devnet: {node.spec.name} exited with {code}; log: {node.log_path}",
                    file=sys.stderr,
                )


def run(args: argparse.Namespace) -> int:
    root: Path = args.home or Path(tempfile.mkdtemp(prefix="tessera-devnet-"))
    root.mkdir(parents=True, exist_ok=True)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_devnet(root, args))
