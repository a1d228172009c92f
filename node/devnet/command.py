"""`tessera devnet`: an orchestrator, validators and miners as separate processes on loopback.

Each node gets a fresh home (key, test wallet and hotkey binding), serves HTTP on a free port and
bootstraps to the orchestrator; peer exchange then connects everyone. Without `--windows` the
devnet waits until every node has admitted every other and keeps running; with `--windows N` the
orchestrator trains N windows of the configured run, the devnet shows its progress and, once the
run is done, writes the summary (`--summary`) and stops. Ctrl-C (or SIGTERM) stops every node
with one SIGTERM each and waits for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from node.devnet.competitions import CompetitionFollower
from node.devnet.net import Competition, Devnet, DevnetPlan
from node.devnet.procs import all_admitted, fetch_statuses, print_table
from node.devnet.train import RunFollower

# The `make devnet` run: 4 windows of the small model in a few minutes on 2 CPU cores.
DEFAULTS = {"batch_size": 8, "seq_len": 128, "batches_per_window": 64, "accumulate": 8, "lr": 3e-3}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "devnet",
        help="run a local network on loopback",
        description="Start an orchestrator, validators and miners as separate processes on "
        "loopback. Without --windows: wait until they all see each other and keep them running "
        "until Ctrl-C. With --windows N: train N windows, show progress, write --summary, stop.",
    )
    p.add_argument(
        "--home", type=Path, help="root for the nodes' homes (default: a fresh temp dir)"
    )
    p.add_argument("--stages", type=int, default=3, help="pipeline stages of the model")
    p.add_argument(
        "--miners",
        type=int,
        help="number of miner nodes (default: two per stage, merging at each window end)",
    )
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
    run = p.add_argument_group("training run (with --windows)")
    run.add_argument("--windows", type=int, default=0, help="windows to train (0: no run)")
    run.add_argument("--model", default="small", help="model preset (tiny, small, …)")
    run.add_argument("--vocab-size", type=int, help="tokenizer vocab (default: the preset's)")
    for flag, kind, text in (
        ("batches-per-window", int, "micro-batches per window"),
        ("accumulate", int, "micro-batches per optimizer step"),
        ("batch-size", int, "sequences per micro-batch"),
        ("seq-len", int, "tokens per sequence"),
        ("lr", float, "peak learning rate"),
    ):
        default = DEFAULTS[flag.replace("-", "_")]
        run.add_argument(f"--{flag}", type=kind, default=default, help=f"{text} ({default})")
    run.add_argument(
        "--compress",
        type=int,
        default=0,
        help="activation compression ratio R at stage boundaries: a learned bottleneck of "
        "width dim // R (0: none)",
    )
    run.add_argument(
        "--wire",
        choices=("float32", "int8"),  # training.wire.WIRE_DTYPES, which imports torch
        default="float32",
        help="how activations and gradients cross stage boundaries (int8: a scale per sequence "
        "and channel, a quarter of the bytes)",
    )
    run.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    run.add_argument("--data-seed", type=int, default=0, help="batch schedule seed")
    run.add_argument("--threads", type=int, default=1, help="torch threads per miner")
    run.add_argument("--data-cache", type=Path, help="corpus cache (default: HOME/data)")
    run.add_argument("--summary", type=Path, help="write the run's JSON summary here")
    run.add_argument("--timeout", type=float, default=0.0, help="give up after S seconds (0: no)")
    run.add_argument(
        "--faults",
        type=lambda text: [k for k in text.split(",") if k],
        default=[],
        metavar="KIND,…",
        help="cheating miners: miner i runs --fault KIND i (lazy, random, stale, copycat, nan, "
        "late, free-rider; lazy:0.25 is lazy in one window of four); the validators then audit "
        "every miner of every window",
    )
    run.add_argument(
        "--audit-wait",
        type=float,
        default=120.0,
        help="seconds to wait after the run for the validators to audit its last window (120)",
    )
    p.add_argument(
        "--chain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run a devnet chain node (on by default): every node registers and admits peers by "
        "the metagraph, validators are staked at genesis and set weights each tempo, and Yuma "
        "epochs pay out (table and summary per uid); --no-chain admits by an allowlist instead",
    )
    p.add_argument("--tempo", type=int, default=20, help="chain blocks (1 s) per epoch (20)")
    p.add_argument(
        "--runs",
        type=parse_runs,
        default=[],
        metavar="MODEL:SHARE,…",
        help="several training runs at once (competitions), e.g. tiny:0.3,small:0.7: each its "
        "own orchestrator, miners and validator nodes (validators share their hotkeys) and its "
        "own subnet mechanism with that share of the emission (needs --windows and the chain)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override passed to every node, e.g. --set orchestrator.leases.min_s=1",
    )
    p.set_defaults(func=run_cli)


def parse_runs(text: str) -> list[Competition]:
    """`tiny:0.3,small:0.7` as competitions; run ids are the model names (numbered when one
    model runs twice)."""
    pairs = []
    for item in (t for t in text.split(",") if t):
        model, sep, share = item.partition(":")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not sep or not model or not value > 0:
            raise argparse.ArgumentTypeError(f"{item!r} is not MODEL:SHARE with a share > 0")
        pairs.append((model, value))
    if abs(sum(v for _, v in pairs) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError("the runs' shares must add up to 1")
    models = [m for m, _ in pairs]
    return [
        Competition(m if models.count(m) == 1 else f"{m}{i}", m, v)
        for i, (m, v) in enumerate(pairs)
    ]


def plan_from_args(args: argparse.Namespace) -> DevnetPlan:
    from training.presets import PRESETS  # torch: only when a devnet actually starts

    run: dict[str, Any] = {}
    if args.windows:
        vocab = args.vocab_size or PRESETS[args.model].vocab_size
        run = {
            "model": args.model,
            "vocab_size": vocab,
            "seed": args.seed,
            "data_seed": args.data_seed,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "batches_per_window": args.batches_per_window,
            "accumulate": args.accumulate,
            "lr": args.lr,
            "compress": args.compress,
            "wire": args.wire,
        }
    return DevnetPlan(
        stages=args.stages,
        miners=args.miners,
        validators=args.validators,
        windows=args.windows,
        run=run,
        threads=args.threads,
        data_cache=args.data_cache,
        sets=list(args.set),
        faults=list(args.faults),
        chain=args.chain,
        tempo=args.tempo,
        runs=list(args.runs),
    )


async def wait_connected(net: Devnet, args: argparse.Namespace, stop: asyncio.Event) -> int:
    """The connect-only devnet: table once everyone is admitted, then up until stopped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.connect_timeout
    while not stop.is_set():
        statuses = await fetch_statuses(net.nodes)
        if all_admitted(statuses):
            break
        if loop.time() > deadline:
            print_table(net.nodes, statuses)
            print("devnet: nodes did not all admit each other in time", file=sys.stderr)
            return 1
        await asyncio.sleep(0.5)
    else:
        return 0
    print_table(net.nodes, statuses)
    if args.exit_when_connected:
        print("devnet: every node has admitted every other; stopping")
        return 0
    print("devnet: up. `tessera status URL` (or `tessera top URL`, or the URL in a browser) shows")
    print("        a node; Ctrl-C stops the network.")
    while not stop.is_set():
        dead = [n for n in net.nodes if n.returncode is not None]
        for node in dead:
            print(
                f"devnet: {node.name} exited with {node.returncode}; log: {node.log_path}",
                file=sys.stderr,
            )
        if dead:
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    return 0


async def run_devnet(root: Path, args: argparse.Namespace) -> int:
    net = Devnet(root, plan_from_args(args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"devnet: homes under {root}")
    try:
        try:
            await net.start()
        except RuntimeError as exc:
            print(f"devnet: {exc}", file=sys.stderr)
            return 1
        for node in net.nodes:
            if node.spec.role == "orchestrator":
                print(f"devnet: dashboard of {node.name}: {node.http}/")
        if not args.windows:
            return await wait_connected(net, args, stop)
        if args.runs:
            names = ", ".join(f"{r.run_id} ({r.share:g})" for r in args.runs)
            print(f"devnet: training {args.windows} windows of each run: {names}; Ctrl-C stops")
            competitions = CompetitionFollower(
                net, summary=args.summary, timeout_s=args.timeout, audit_wait_s=args.audit_wait
            )
            return await competitions.follow(stop)
        print(f"devnet: training {args.windows} windows of {args.model}; Ctrl-C stops")
        follower = RunFollower(
            net, summary=args.summary, timeout_s=args.timeout, audit_wait_s=args.audit_wait
        )
        return await follower.follow(stop)
    finally:
        print("devnet: stopping nodes")
        for name, code in (await net.stop(timeout=10.0)).items():
            if code not in (0, None):
                log = net.node(name).log_path
                print(f"devnet: {name} exited with {code}; log: {log}", file=sys.stderr)
                print(f"  {last_line(log)}", file=sys.stderr)


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_cli(args: argparse.Namespace) -> int:
    if args.stages < 1 or args.validators < 0 or (args.miners is not None and args.miners < 0):
        print("devnet: --stages must be >= 1, --miners and --validators >= 0", file=sys.stderr)
        return 2
    from training.presets import PRESETS

    if args.runs and (not args.windows or not args.chain or args.faults):
        print(
            "devnet: --runs needs --windows and the chain, and takes no --faults", file=sys.stderr
        )
        return 2
    for model in (r.model for r in args.runs):
        if model not in PRESETS:
            print(f"devnet: unknown --runs model {model!r} ({', '.join(PRESETS)})", file=sys.stderr)
            return 2
    if args.model not in PRESETS:
        print(f"devnet: unknown --model {args.model!r} ({', '.join(PRESETS)})", file=sys.stderr)
        return 2
    from node.mining.faults import FAULTS, check

    unknown = []
    for kind in args.faults:
        try:
            check(kind)
        except ValueError:
            unknown.append(kind)
    if unknown:
        print(f"devnet: unknown --faults {unknown} ({', '.join(FAULTS)})", file=sys.stderr)
        return 2
    if len(args.faults) > (2 * args.stages if args.miners is None else args.miners):
        print("devnet: more --faults than miners", file=sys.stderr)
        return 2
    root: Path = args.home or Path(tempfile.mkdtemp(prefix="tessera-devnet-"))
    root.mkdir(parents=True, exist_ok=True)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_devnet(root, args))
