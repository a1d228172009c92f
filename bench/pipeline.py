"""Pipeline benchmark: the same training in one process and on a devnet, compared.

Both train the same model (`RunSpec.model_config()`), split into the same stages, from the same
seeds, on the same batch schedule (batch b of window w), with the same optimizer settings
(`RunSpec.engine_config()`) for the same number of tokens:

- one process: `training.local_trainer.train_local`, one window at a time, torch using every core
  (`--local-threads`, default all);
- a devnet: `tessera devnet --no-chain --windows N --summary F` as a subprocess (the training
  alone: no chain node, whose payout wait would only lengthen the run), each miner with
  `--miner-threads` torch threads (default 1), `--miners-per-stage` miners per stage (default 1;
  with 2 the stage's miners each train on their half of the batches and merge at each window
  end).

A devnet runs for each count in `--validators` (default 1,0: with a validator replaying audits
on the same cores, and without); the top-level figures are the first one's, `by_validators` has
each one's ratio and per-miner time breakdown (`/status` → `miner.time`: the compute thread's
shares of wall time in engine compute, (de)serialisation, digests, other job work and waiting
for input, and the concurrent shares of sealing, opening, sending, retention and saves), also
printed as a table on stderr.

The one-process run is timed twice, before the devnets and after them, and its rate pools both
(`tokens_per_s.one_process_runs` has each): its rate alone moved by a third between runs on an
otherwise idle machine while the devnet's did not; `one_process_repeat_identical` checks that
the second run trained exactly as the first.

Prints one JSON object: `tokens_per_s_ratio` (devnet ÷ one process; goal >= 0.7 with a validator,
>= 0.85 without), `loss_ratio`
(devnet final loss ÷ one-process final loss at equal tokens, final = last window's mean train
loss), `loss_ratio_step_matched` (devnet final loss ÷ one-process loss over the
optimizer steps each devnet miner made: with m miners per stage a miner makes 1/m of a window's
steps, so this separates what the merge gains or loses from the shorter sequential run; equal to
`loss_ratio` with one miner per stage), `loss_ratio_global_batch` (devnet final loss ÷ one
process whose optimizer steps each take every miner's micro-batches, i.e. `accumulate` times
the miners per stage: the data-parallel baseline at the same global batch, run in the same
invocation; equal to `loss_ratio` with one miner per stage; goal <= 1.02), both loss curves
and the raw figures. Throughput is compared over the windows after the first (`basis`), because
the devnet's first window also covers start-up (the miners building their stages); the
all-windows ratio is reported too.

    python bench/pipeline.py --json
    python bench/pipeline.py --json --validators 0
    python bench/pipeline.py --json --compress 16
    python bench/pipeline.py --json --compress 16,4,64
    python bench/pipeline.py --json --compress 16 --wire int8

With `--compress R[,R2,…]` it instead runs devnets on the same schedule, one without and one per
ratio with a learned bottleneck of width dim // R at each stage boundary (`RunSpec.compress`),
and reports the activation and gradient bytes the miners delivered per token
(`bytes_per_token_ratio`, compressed ÷ uncompressed) and `loss_ratio` (final loss, compressed ÷
uncompressed, at equal tokens); top level for the first ratio, all in `by_ratio`. `--wire int8`
sends the compressed runs' activations and gradients as int8 with a float32 scale per
sequence and channel, deflated where that saves bytes (`p2p.body_codec`); the bytes counted
are the bodies as sent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from pipeline_compare import compare
from run_args import add_run_args, run_spec
from scratch import scratch_dir
from time_table import time_table

from training.data.build import build_dataset
from training.determinism import set_determinism
from training.local_trainer import TrainConfig, TrainResult, train_local
from training.run_spec import RunSpec

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p)
    p.add_argument("--local-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--miner-threads", type=int, default=1)
    p.add_argument("--miners-per-stage", type=int, default=1)
    p.add_argument(
        "--validators",
        type=_counts,
        default=[1, 0],
        help="validator counts, comma-separated: a devnet runs for each (default 1,0: with the "
        "validator replaying audits on the same cores, and without); the top-level figures "
        "are the first one's",
    )
    p.add_argument(
        "--compress",
        type=_counts,
        default=[],
        help="compression ratios R, comma-separated: compare a devnet with a learned bottleneck "
        "of width dim // R at each stage boundary against one without (run once): bytes per "
        "token and loss; the top-level figures are the first R's",
    )
    p.add_argument(
        "--wire",
        choices=("float32", "int8"),
        default="float32",
        help="with --compress: how the compressed runs' activations and gradients cross stage "
        "boundaries (int8: a scale per sequence and channel); the uncompressed run: float32",
    )
    p.add_argument(
        "--eval-batches",
        type=int,
        default=0,
        help="held-out batches per domain the devnet evaluates per window (0: none, as the "
        "one-process run does not evaluate either)",
    )
    p.add_argument("--home", type=Path, help="working dir (default: a fresh temp dir)")
    p.add_argument("--timeout", type=float, default=900.0, help="devnet time limit, seconds")
    p.add_argument("--set", action="append", default=[], help="passed on to `tessera devnet`")
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    return p.parse_args(argv)


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}")
    return counts


def say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(f"bench: {text}", file=sys.stderr, flush=True)


def one_process(args: argparse.Namespace, spec: RunSpec, cache: Path) -> dict[str, Any]:
    set_determinism(threads=args.local_threads)
    dataset = build_dataset(spec.data_config(cache))
    steps_per_window = spec.batches_per_window // spec.accumulate
    config = TrainConfig(
        steps=steps_per_window,
        n_stages=spec.n_stages,
        seed=spec.seed,
        data_seed=spec.data_seed,
        batch_size=spec.batch_size,
        seq_len=spec.seq_len,
        batches_per_window=spec.batches_per_window,
        engine=spec.engine_config(),
    )
    windows, steps = [], []
    result: TrainResult | None = None
    for window in range(args.windows):
        result = train_local(
            dataset, spec.model_config(), config, engines=result.engines if result else None
        )
        steps += result.losses
        windows.append(
            {
                "window": window,
                "loss": sum(result.losses) / len(result.losses),
                "tokens": result.tokens,
                "seconds": result.seconds,
                "tokens_per_s": result.tokens_per_s,
            }
        )
        say(args, f"one process: window {window} loss {windows[-1]['loss']:.4f}")
    return {"threads": torch.get_num_threads(), "windows": windows, "step_losses": steps}


def devnet(
    args: argparse.Namespace, spec: RunSpec, root: Path, cache: Path, validators: int
) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    summary = root / "devnet-summary.json"
    cmd = [sys.executable, "-m", "node", "devnet", "--home", str(root / "devnet"), "--no-chain"]
    cmd += ["--stages", str(spec.n_stages), "--validators", str(validators)]
    cmd += ["--miners", str(spec.n_stages * args.miners_per_stage)]
    cmd += ["--windows", str(args.windows), "--model", spec.model]
    cmd += ["--vocab-size", str(spec.vocab_size), "--seed", str(spec.seed)]
    cmd += ["--data-seed", str(spec.data_seed), "--batch-size", str(spec.batch_size)]
    cmd += ["--seq-len", str(spec.seq_len), "--batches-per-window", str(spec.batches_per_window)]
    cmd += ["--accumulate", str(spec.accumulate), "--lr", repr(spec.lr)]
    cmd += ["--compress", str(spec.compress), "--wire", spec.wire]
    cmd += ["--threads", str(args.miner_threads), "--data-cache", str(cache)]
    cmd += ["--summary", str(summary), "--timeout", str(args.timeout)]
    cmd += ["--set", f"orchestrator.eval_batches={args.eval_batches}"]
    for item in args.set:
        cmd += ["--set", item]
    log = root / "devnet.log"
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall = time.monotonic() - started
    if code.returncode != 0 or not summary.exists():
        tail = log.read_text()[-3000:]
        raise SystemExit(f"bench: devnet failed ({code.returncode}); {log}:\n{tail}")
    doc: dict[str, Any] = json.loads(summary.read_text())
    doc["wall_s_subprocess"] = round(wall, 3)
    doc["command"] = " ".join(cmd[1:])
    return doc


def compression(args: argparse.Namespace, spec: RunSpec, root: Path, cache: Path) -> Any:
    """A devnet without the bottleneck, then one per ratio, same schedule and tokens."""
    validators = args.validators[0]
    nets = {}
    for ratio in (0, *args.compress):
        say(args, f"devnet with compress {ratio}, {validators} validator(s)")
        run = dataclasses.replace(spec, compress=ratio, wire=args.wire if ratio else "float32")
        nets[ratio] = devnet(args, run, root / f"compress-{ratio}", cache, validators)
    base = nets[0]
    base_bytes = base["tensor_bytes_sent"] / max(base["tokens"], 1)
    by_ratio = {}
    for ratio in args.compress:
        doc = nets[ratio]
        per_token = doc["tensor_bytes_sent"] / max(doc["tokens"], 1)
        by_ratio[str(ratio)] = {
            "bottleneck": dataclasses.replace(spec, compress=ratio).model_config().wire_dim,
            "wire": args.wire,
            "bytes_per_token": per_token,
            "bytes_per_token_ratio": per_token / max(base_bytes, 1e-9),
            "loss_ratio": doc["final_loss"] / base["final_loss"],
            "final_loss": doc["final_loss"],
            "equal_tokens": doc["tokens"] == base["tokens"],
            "tokens_per_s": doc["tokens_per_s"],
            "loss_per_window": [w["loss"] for w in doc["windows"]],
        }
    first = by_ratio[str(args.compress[0])]
    return {
        "compress": args.compress[0],
        "bytes_per_token_ratio": first["bytes_per_token_ratio"],
        "loss_ratio": first["loss_ratio"],
        "by_ratio": by_ratio,
        "uncompressed": {
            "dim": spec.model_config().dim,
            "bytes_per_token": base_bytes,
            "final_loss": base["final_loss"],
            "tokens": base["tokens"],
            "tokens_per_s": base["tokens_per_s"],
            "loss_per_window": [w["loss"] for w in base["windows"]],
        },
        "validators": validators,
        "spec": spec.to_record(),
        "goals": {
            "bytes_per_token_ratio": "<= 1/R (1/(4R) with --wire int8)",
            "loss_ratio (R = 16)": "<= 1.03",
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.home is not None:
        return measure(args, args.home)
    with scratch_dir("tessera-bench-") as root:  # its devnets' stores take gigabytes
        return measure(args, root)


def measure(args: argparse.Namespace, root: Path) -> int:
    spec = run_spec(args)
    root.mkdir(parents=True, exist_ok=True)
    cache = root / "data"
    if args.compress:
        doc = compression(args, spec, root, cache)
        print(json.dumps(doc, indent=None if args.json else 2))
        return 0
    say(args, f"one process: {args.windows} windows of {spec.model}, {args.local_threads} threads")
    load = {"before_one_process": os.getloadavg()}
    started = time.monotonic()
    local = one_process(args, spec, cache)
    local["wall_s"] = round(time.monotonic() - started, 3)
    global_batch = local
    if args.miners_per_stage > 1:
        wide = dataclasses.replace(spec, accumulate=spec.accumulate * args.miners_per_stage)
        say(args, f"one process at the devnet's global batch (accumulate {wide.accumulate})")
        global_batch = one_process(args, wide, cache)
    miners = spec.n_stages * args.miners_per_stage
    steps = spec.batches_per_window // spec.accumulate
    nets: dict[int, dict[str, Any]] = {}
    for validators in args.validators:
        home = root / f"validators-{validators}"
        say(args, f"devnet: {miners} miners x {args.miner_threads} thread(s), "
                  f"{validators} validator(s); log {home}")  # fmt: skip
        load[f"before_devnet_{validators}v"] = os.getloadavg()
        nets[validators] = devnet(args, spec, home, cache, validators)
        load[f"after_devnet_{validators}v"] = os.getloadavg()
        table = time_table(nets[validators].get("time_per_miner") or {})
        print(f"time per miner, {validators} validator(s):\n{table}", file=sys.stderr, flush=True)
    say(args, "one process again (its rate is pooled with the first run's)")
    load["before_one_process_again"] = os.getloadavg()
    again = one_process(args, spec, cache)
    net = nets[args.validators[0]]
    by_validators = {}
    for validators, doc in nets.items():
        figures = compare(local, doc, steps, args.miners_per_stage, again)
        by_validators[str(validators)] = {
            "tokens_per_s_ratio": figures["tokens_per_s_ratio"],
            "tokens_per_s": figures["tokens_per_s"]["devnet"],
            "loss_ratio": figures["loss_ratio"],
            "time_per_miner": doc.get("time_per_miner") or {},
        }
    out = {
        "spec": spec.to_record(),
        "windows": args.windows,
        "validators": args.validators[0],
        **compare(local, net, steps, args.miners_per_stage, again),
        "one_process_repeat_identical": again["step_losses"] == local["step_losses"],
        "by_validators": by_validators,
        "loss_ratio_global_batch": net["final_loss"] / global_batch["windows"][-1]["loss"]
        if net["final_loss"]
        else None,
        "final_loss_global_batch": global_batch["windows"][-1]["loss"],
        "threads": {
            "cpu_count": os.cpu_count(),
            "one_process": local["threads"],
            "devnet_per_miner": args.miner_threads,
            "devnet_miners": spec.n_stages * args.miners_per_stage,
        },
        "load_average": load,
        "note": "other processes on the machine skew both figures; see load_average",
        "curves": {
            "one_process_per_step": local["step_losses"],
            "one_process_per_window": local["windows"],
            "devnet_per_window": net["windows"],
        },
        "devnet": {k: v for k, v in net.items() if k != "windows"},
        "one_process": {"wall_s": local["wall_s"]},
        "goals": {
            "tokens_per_s_ratio": ">= 0.7 with a validator, >= 0.85 without (--validators 0)",
            "loss_ratio_global_batch": "<= 1.02",
        },
    }
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
