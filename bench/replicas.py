"""Replica benchmark: what merging r replicas of a stage does to the loss, against one process at
the same global batch, in one process (no network).

r copies of the chained stage engines train side by side, as a stage's r miners do: at global
step t replica j takes micro-batches [(t·r + j)·A, (t·r + j + 1)·A) of the run's schedule
(A = `--accumulate`) and makes one optimizer step. Every H replica steps (`--merge-every`; 0 is
the run's window, `batches_per_window / (A·r)` steps, as on a devnet) they are merged stage by
stage: the plain average of the parameters and the AdamW moments (`--no-moments`: the
parameters alone), or a DiLoCo outer step from the merge's start (`--outer-lr`,
`--outer-momentum`; `training.merge.reduce.outer_step`; each replica keeps its own moments).
Baselines, in the same invocation and on the same micro-batches:

  loss_ratio_global_batch: replicas ÷ one process whose every step takes all r·A micro-batches
      (data-parallel training at the same global batch and the same number of steps: how a
      merge is judged);
  loss_ratio: replicas ÷ one process at accumulate A over the same tokens (r times the steps);
  loss_ratio_step_matched: replicas ÷ that process over its first `--steps` steps.

A final loss is the mean train loss of the last `--tail` global steps (each replica's
micro-batches, or the baseline's same micro-batches). `bytes_sent_per_token` is what one member of
a stage sends in the merges (fp32 butterfly, `MergePlan.bytes_sent`) per token it trained on,
averaged over the stages. `--sweep` runs every merge interval in {window, 32, 128} with the plain
average and a few DiLoCo settings for each replica count; the default runs the given settings.
The defaults are the devnet's run scaled down to fit a CPU: the `tiny` model, 4x64-token
micro-batches, 2 per step, and 16 per window, so that two replicas merge every 4 of their steps
as a `make devnet` stage's two miners do (64 micro-batches a window, 8 a step).

    python bench/replicas.py --json
    python bench/replicas.py --json --sweep
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
from run_args import add_run_args, run_spec
from scratch import scratch_dir

from training.data.build import build_dataset
from training.data.dataset import Dataset
from training.determinism import set_determinism
from training.engine import StageEngine
from training.local_trainer import run_micro_batch
from training.merge.layout import Layout
from training.merge.plan import make_plan
from training.merge.reduce import outer_step, weighted_mean
from training.merge.state import load_merged, merge_tensors
from training.run_spec import RunSpec
from training.stages import build_stages

SWEEP_EVERY = (0, 32, 128)
SWEEP_OUTER = ((0.0, 0.0), (0.7, 0.9), (0.4, 0.9), (1.0, 0.5))
"""(outer lr, outer momentum): the plain average, DiLoCo's setting, and a small sweep."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p)
    p.set_defaults(model="tiny", batch_size=4, seq_len=64, accumulate=2, batches_per_window=16)
    p.add_argument("--replicas", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--steps", type=int, default=400, help="optimizer steps of each replica")
    p.add_argument("--tail", type=int, default=40, help="global steps the final loss averages")
    p.add_argument("--merge-every", type=int, default=0, help="replica steps; 0: the window")
    p.add_argument("--outer-lr", type=float, default=0.0, help="0: the plain average")
    p.add_argument("--outer-momentum", type=float, default=0.0)
    p.add_argument(
        "--moments",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="merge the AdamW moments too, as orchestrator.merge.moments (default) does",
    )
    p.add_argument("--sweep", action="store_true", help="every interval and outer setting")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data-cache", type=Path, help="default: a fresh temp dir")
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    return p.parse_args(argv)


def chain(spec: RunSpec) -> list[StageEngine]:
    stages = build_stages(spec.model_config(), spec.n_stages, seed=spec.seed)
    return [StageEngine(s, spec.engine_config()) for s in stages]


class Replicas:
    """`n` chains of stage engines from one seed, merged stage by stage as a stage's miners
    merge (`training.merge.state`: the parameters, and with `moments` the AdamW moments)."""

    def __init__(
        self, spec: RunSpec, n: int, outer_lr: float, outer_momentum: float, moments: bool
    ) -> None:
        self.chains = [chain(spec) for _ in range(n)]
        self.lr, self.mu = outer_lr, outer_momentum
        self.moments = moments and outer_lr == 0  # as MergeHandler: DiLoCo keeps its own
        first = self.chains[0]
        tensors = [merge_tensors(e, moments=self.moments) for e in first]
        self.layouts = [Layout.of_tensors(t) for t in tensors]
        self.starts = [lay.flatten(t) for lay, t in zip(self.layouts, tensors, strict=True)]
        self.momenta = [torch.zeros(lay.size) for lay in self.layouts]

    def merge(self) -> None:
        for s, layout in enumerate(self.layouts):
            vectors = [
                layout.flatten(merge_tensors(c[s], moments=self.moments)) for c in self.chains
            ]
            merged = weighted_mean(vectors, [1.0] * len(vectors))
            if self.lr > 0:
                merged, self.momenta[s] = outer_step(
                    self.starts[s], merged, self.momenta[s], lr=self.lr, mu=self.mu
                )
            for c in self.chains:
                load_merged(c[s], layout, merged)
            self.starts[s] = merged


class Schedule:
    """Micro-batch k of the run: batch k mod B of window k div B (B = batches per window)."""

    def __init__(self, spec: RunSpec, data: Dataset) -> None:
        self.spec, self.data = spec, data

    def step(self, engines: list[StageEngine], first: int, count: int) -> float:
        """Micro-batches first .. first+count-1 through `engines` (one optimizer step when count
        is the engines' accumulate); their mean loss."""
        spec, total = self.spec, 0.0
        for k in range(first, first + count):
            window, index = divmod(k, spec.batches_per_window)
            x, y = self.data.batch(
                spec.data_seed, window, index, batch_size=spec.batch_size, seq_len=spec.seq_len
            )
            total += run_micro_batch(engines, (window, index), x, y)
        return total / count


def one_process(spec: RunSpec, schedule: Schedule, steps: int, accumulate: int) -> list[float]:
    """Step losses of one process taking `accumulate` micro-batches a step."""
    engines = chain(dataclasses.replace(spec, accumulate=accumulate))
    return [schedule.step(engines, t * accumulate, accumulate) for t in range(steps)]


def replicated(
    spec: RunSpec,
    schedule: Schedule,
    r: int,
    steps: int,
    every: int,
    outer: tuple[float, float],
    moments: bool,
) -> tuple[list[float], int]:
    """Per global step, the replicas' mean loss; and how many merges ran."""
    replicas = Replicas(spec, r, *outer, moments)
    a, losses, merges = spec.accumulate, [], 0
    for t in range(steps):
        losses.append(
            sum(schedule.step(c, (t * r + j) * a, a) for j, c in enumerate(replicas.chains)) / r
        )
        if (t + 1) % every == 0 or t + 1 == steps:
            replicas.merge()
            merges += 1
    return losses, merges


def bytes_per_token(spec: RunSpec, r: int, merges: int, steps: int, moments: bool) -> float:
    sizes = [Layout.of_tensors(merge_tensors(e, moments=moments)).size for e in chain(spec)]
    members = [f"m{i}" for i in range(r)]
    sent = [
        sum(make_plan("bench", 0, s, members, n).bytes_sent(m, lambda k: 4 * k) for m in members)
        / r
        for s, n in enumerate(sizes)
    ]
    tokens = steps * spec.accumulate * spec.batch_size * spec.seq_len
    return merges * sum(sent) / len(sent) / tokens


def mean_tail(losses: list[float], tail: int) -> float:
    return sum(losses[-tail:]) / len(losses[-tail:])


def baselines(
    args: argparse.Namespace, spec: RunSpec, schedule: Schedule, r: int
) -> dict[str, float]:
    a, steps, tail = spec.accumulate, args.steps, args.tail
    wide = one_process(spec, schedule, steps, r * a)
    narrow = one_process(spec, schedule, r * steps, a)
    return {
        "global_batch": mean_tail(wide, tail),
        "equal_tokens": mean_tail(narrow, r * tail),
        "step_matched": mean_tail(narrow[:steps], tail),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_determinism(threads=args.threads)
    spec = run_spec(args)
    with scratch_dir("tessera-replicas-", args.data_cache) as cache:
        schedule = Schedule(spec, build_dataset(spec.data_config(cache)))  # held in memory
    grid = (
        [(h, o) for h in SWEEP_EVERY for o in SWEEP_OUTER]
        if args.sweep
        else [(args.merge_every, (args.outer_lr, args.outer_momentum))]
    )
    runs: list[dict[str, object]] = []
    base: dict[int, dict[str, float]] = {}
    for r in args.replicas:
        window = max(1, spec.batches_per_window // (spec.accumulate * r))
        base[r] = baselines(args, spec, schedule, r)
        for every, outer in grid:
            losses, merges = replicated(
                spec, schedule, r, args.steps, every or window, outer, args.moments
            )
            final = mean_tail(losses, args.tail)
            runs.append({
                "replicas": r, "merge_every": every or window, "at_window": every == 0,
                "outer_lr": outer[0], "outer_momentum": outer[1], "final_loss": final,
                "loss_ratio_global_batch": final / base[r]["global_batch"],
                "loss_ratio": final / base[r]["equal_tokens"],
                "loss_ratio_step_matched": final / base[r]["step_matched"],
                "merges": merges,
                "bytes_sent_per_token": bytes_per_token(
                    spec, r, merges, args.steps, args.moments and outer[0] == 0
                ),
            })  # fmt: skip
            if not args.json:
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    first = {r: next(x for x in runs if x["replicas"] == r) for r in args.replicas}
    out = {
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("json", "data_cache", "windows")
        },
        "loss_ratio_global_batch": {r: x["loss_ratio_global_batch"] for r, x in first.items()},
        "baselines": base,
        "runs": runs,
        "goal": "loss_ratio_global_batch <= 1.02 for 2 and 4 replicas",
    }
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
