"""`tessera` command line: keygen, node, devnet, status and metagraph."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node import __version__
from node.config_loader import ConfigError, parse_assignment
from node.roles import ROLE_NAMES


def _node_parser(sub: Any) -> None:
    p = sub.add_parser("node", help="run a node daemon", description="Run a tessera node daemon.")
    p.add_argument("--home", type=Path, help="node home: key, store, endpoints (node.home)")
    p.add_argument(
        "--role",
        action="append",
        choices=ROLE_NAMES,
        dest="roles",
        help="role to run; repeat to combine roles in one process (node.roles)",
    )
    p.add_argument("--config", type=Path, help="TOML config file; flags override its values")
    p.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help="libp2p listen address, repeatable (p2p.listen)",
    )
    p.add_argument("--http", metavar="HOST:PORT", help="status HTTP address (http.listen)")
    p.add_argument(
        "--bootstrap",
        action="append",
        metavar="MULTIADDR",
        help="peer to dial at start, repeatable (p2p.bootstrap)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log verbosity (node.log_level)",
    )
    p.add_argument(
        "--chain",
        metavar="NETWORK",
        help="the subnet's chain: a bittensor network (test, finney, local, ws://…) or devnet "
        "(chain.network; the wallet comes from chain.wallet_name)",
    )
    p.add_argument("--netuid", type=int, help="the subnet on that chain (chain.netuid)")
    p.add_argument(
        "--run",
        metavar="RUN_ID",
        help="the training run (competition) this node works in (node.run_id); a subnet may "
        "run several, each with its own orchestrator and mechanism",
    )
    p.add_argument(
        "--fault",
        metavar="KIND",
        help="test/devnet only: run the miner as a cheater of this kind (miner.fault): "
        "lazy, random, stale, copycat, nan, late, free-rider, bad-merge (KIND:F cheats in one "
        "window of 1/F, e.g. lazy:0.25); flaky-net:F loses or delays a share F of its requests",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set store.map_size_mib=4096",
    )
    p.set_defaults(func=_run_node)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera", description="Node daemon for decentralized pipeline-parallel LLM training."
    )
    parser.add_argument("--version", action="version", version=f"tessera {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from node import keygen, status_cmd
    from node.chain import metagraph_cmd
    from node.devnet import command as devnet

    keygen.add_parser(sub)
    _node_parser(sub)
    devnet.add_parser(sub)
    status_cmd.add_parser(sub)
    metagraph_cmd.add_parser(sub)
    return parser


def node_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted config keys set by `tessera node` flags (flags beat the TOML file)."""
    flags = {
        "node.home": str(args.home) if args.home else None,
        "node.roles": args.roles,
        "node.run_id": args.run,
        "node.log_level": args.log_level,
        "p2p.listen": args.listen,
        "p2p.bootstrap": args.bootstrap,
        "http.listen": args.http,
        "miner.fault": None if _flaky(args.fault) is not None else args.fault,
        "p2p.flaky_net": _flaky(args.fault),
        "chain.network": args.chain,
        "chain.netuid": args.netuid,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_assignment(s) for s in args.set)
    return overrides


def _run_node(args: argparse.Namespace) -> int:
    from node.config import load_node_config

    try:
        config = load_node_config(args.config, node_overrides(args))
    except ConfigError as exc:
        print(f"tessera: config error: {exc}", file=sys.stderr)
        return 2
    from node.daemon import run_node

    return run_node(config)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


def _flaky(fault: str | None) -> float | None:
    """F of a `flaky-net:F` fault (a transport fault, `p2p.flaky_net`), else None."""
    if not fault or not fault.startswith("flaky-net"):
        return None
    _, _, rate = fault.partition(":")
    try:
        return float(rate or 0.05)
    except ValueError:
        raise SystemExit(f"tessera node: --fault {fault}: F must be a number") from None
