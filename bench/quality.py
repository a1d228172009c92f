"""Quality screen benchmark: does the screen rank cheaters below every honest miner, at what cost.

A run of `--stages` stages with two miners per stage trains in one process (no network: what is
measured is the validator's screen, not the transport): each window the miners of route r
(r = 0, 1) train the chained `StageEngine`s on half of the window's batches of the run's
schedule, then report their window-end checkpoints; each stage's reports are averaged into the
merged weights every member goes on from, as the stage merge does. Two miners cheat on what they
report, while computing honestly for their route (so the honest miners' gradients are clean and
the screen alone is judged): `lazy` reports the weights it started from (a zero delta), `random`
its start plus a random step of the learning rate's size per optimizer step. The cheaters'
reports enter the merge, as they would.

After each window the validator's code runs as on a node: `verification.quality.screen_window`
on a held-out batch drawn from a fresh secret, the Templar book (`verification.templar`) folds
the screens in, and the pay rule (`node.auditing.pay_rule.compose`, with equal validated work)
turns them into weights under each `validator.quality_pay` ("off", "gate", "templar"). Prints
one JSON object with
`honest_improved_share` (honest screens that lowered the held-out loss),
`cheaters_below_all_honest` (in every window from the first screened one on, every cheater ranks
below every honest miner in the book's ranking), `cost_ratio` (screen CPU seconds per miner per
window ÷ a miner's training CPU seconds per window; goal at most 0.1), `windows` (per window:
each miner's improvement and the ranking) and `weights` (the last window's pay shares by
`quality_pay`).

    python bench/quality.py --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from run_args import add_run_args, run_spec
from scratch import scratch_dir

from node.auditing.pay_rule import compose
from training.data.build import build_dataset
from training.determinism import set_determinism
from training.engine import StageEngine
from training.run_spec import RunSpec
from verification.checkpoints import build_engine, checkpoint_bytes, checkpoint_weights
from verification.quality import Contribution, heldout_batch, screen_window
from verification.templar import TemplarBook, TemplarParams

CHEATS = {(1, 1): "lazy", (2, 0): "random"}
"""(stage, route) -> the cheat of the miner placed there."""


def name(stage: int, route: int) -> str:
    return f"s{stage}r{route}"


def fake_report(spec: RunSpec, stage: int, start: bytes, kind: str, steps: int, seed: int) -> bytes:
    engine = build_engine(spec, stage, start)
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        weights = engine.state_dict()
        for _ in range(steps):
            weights = {
                k: v + torch.randn(v.shape, generator=g) * spec.lr for k, v in weights.items()
            }
        engine.load_state_dict(weights)
    return checkpoint_bytes(engine)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p)
    p.set_defaults(model="tiny", windows=12, batches_per_window=16, accumulate=4, batch_size=8)
    p.set_defaults(seq_len=128, lr=1e-3)
    p.add_argument(
        "--screen-batch-size", type=int, default=4, help="as validator.screen_batch_size"
    )
    p.add_argument("--data-cache", type=Path)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    set_determinism(threads=1)
    spec = run_spec(args)
    with scratch_dir("tessera-quality-", args.data_cache) as cache:
        dataset = build_dataset(spec.data_config(cache))  # held in memory
    routes = [[build_engine(spec, s, None) for s in range(spec.n_stages)] for _ in range(2)]
    book = TemplarBook(TemplarParams())
    honest = [name(s, r) for s in range(spec.n_stages) for r in range(2) if (s, r) not in CHEATS]
    cheats = [name(s, r) for (s, r) in CHEATS]
    base: dict[int, bytes | None] = {s: None for s in range(spec.n_stages)}
    train_cpu = screen_cpu = 0.0
    rows: list[dict[str, Any]] = []
    improved = screened = 0
    separated = True
    weights: dict[str, dict[str, float]] = {}
    steps = spec.batches_per_window // (2 * spec.accumulate)
    for window in range(args.windows):
        started = time.thread_time()
        for index in range(spec.batches_per_window):
            engines = routes[index % 2]
            ids, targets = dataset.batch(
                spec.data_seed, window, index, batch_size=spec.batch_size, seq_len=spec.seq_len
            )
            x = ids
            for engine in engines[:-1]:
                x = engine.forward((window, index), x)
            engines[-1].forward((window, index), x, targets)
            grad = engines[-1].backward((window, index))
            for engine in reversed(engines[:-1]):
                grad = engine.backward((window, index), grad)
        train_cpu += time.thread_time() - started
        contributions, reports = [], {}
        for s in range(spec.n_stages):
            for r in range(2):
                given = base[s]
                start = (
                    given if given is not None else checkpoint_bytes(build_engine(spec, s, None))
                )
                kind = CHEATS.get((s, r))
                report = (
                    checkpoint_bytes(routes[r][s])
                    if kind is None
                    else fake_report(spec, s, start, kind, steps, window * 10 + s)
                )
                reports[(s, r)] = report
                contributions.append(Contribution(name(s, r), s, base[s], report))
        secret = hashlib.sha256(f"bench-secret-{window}".encode()).digest()
        batch = heldout_batch(
            dataset, secret, window, batch_size=args.screen_batch_size, seq_len=spec.seq_len
        )
        started = time.thread_time()
        screens = screen_window(spec, base, contributions, batch)
        screen_cpu += time.thread_time() - started
        book.update(screens, worked=screens.keys())
        ranking = book.ranking()
        separated &= max(ranking.index(c) for c in cheats) > max(ranking.index(h) for h in honest)
        improved += sum(screens[h].improvement > 0 for h in honest)
        screened += len(honest)
        for s in range(spec.n_stages):  # the stage merge: the members' reports averaged
            merged = merge(routes[0][s], [checkpoint_weights(reports[(s, r)]) for r in range(2)])
            for r in range(2):
                routes[r][s].load_state_dict(merged)
            base[s] = checkpoint_bytes(routes[0][s])
        stage_of = {name(s, r): s for s in range(spec.n_stages) for r in range(2)}
        record: dict[str, Any] = {
            "spec": spec.to_record(),
            "stage_of": stage_of,
            "work": {
                name(s, r): spec.batches_per_window // 2
                for s in range(spec.n_stages)
                for r in range(2)
            },
            "seconds": 0.0,
            "tokens_per_batch": spec.tokens_per_batch,
        }
        validated = {m: 1.0 for m in stage_of}
        weights = {
            mode: compose(
                validated, {window: record}, book, run_share=1.0, tolerance=0.8, quality_pay=mode
            ).weights
            for mode in ("off", "gate", "templar")
        }
        rows.append({
            "window": window,
            "improvement": {m: round(s.improvement, 6) for m, s in sorted(screens.items())},
            "ranking": ranking,
        })  # fmt: skip
        if not args.json:
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    miners = 2 * spec.n_stages
    cost = (screen_cpu / (args.windows * miners)) / (train_cpu / (args.windows * miners))
    out = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "data_cache")},
        "cheats": {name(s, r): kind for (s, r), kind in CHEATS.items()},
        "honest_improved_share": improved / screened,
        "cheaters_below_all_honest": separated,
        "cost_ratio": cost,
        "screen_cpu_s_per_miner_window": screen_cpu / (args.windows * miners),
        "train_cpu_s_per_miner_window": train_cpu / (args.windows * miners),
        "weights": {
            mode: {m: round(w, 6) for m, w in sorted(ws.items())} for mode, ws in weights.items()
        },
        "windows": rows,
        "goals": "honest_improved_share > 0.5, cheaters_below_all_honest, cost_ratio <= 0.1",
    }
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


def merge(engine: StageEngine, reports: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The plain average of the members' reported weights."""
    return {k: torch.stack([r[k] for r in reports]).mean(dim=0) for k in engine.state_dict()}


if __name__ == "__main__":
    sys.exit(main())
