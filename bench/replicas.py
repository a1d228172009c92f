"""Replica benchmark: what a stage merge's settings do to the loss at equal tokens, in one process.

The devnet's two-miners-per-stage run without the network: `--replicas` copies of the chained
stage engines train side by side on the same batch schedule, step group g of a window going to
replica g mod r (as the router sends whole groups to one miner per stage), and are merged
stage by stage — the plain average, or a DiLoCo outer step from the merge's start
(`training.merge.reduce.outer_step`) — at each window end, or every `--merge-every` optimizer
steps of a replica. One-process training (one replica) runs first in the same invocation.

Prints one JSON object: per-window mean train loss of both, `loss_ratio` (replicas ÷ one process,
last window) and `loss_ratio_step_matched` (replicas ÷ one process over the optimizer steps each
replica made, i.e. 1/r of a window's per window).

    python bench/replicas.py --json
    python bench/replicas.py --json --outer-lr 0.7 --outer-momentum 0.9
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from pipeline import add_run_args, run_spec

from training.data.build import build_dataset
from training.data.dataset import Dataset
from training.determinism import set_determinism
from training.engine import StageEngine
from training.local_trainer import run_micro_batch
from training.merge.layout import Layout
from training.merge.reduce import outer_step, weighted_mean
from training.run_spec import RunSpec
from training.stages import build_stages


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(p)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--merge-every", type=int, default=0, help="replica steps; 0: window end")
    p.add_argument("--outer-lr", type=float, default=0.0, help="0: the plain average")
    p.add_argument("--outer-momentum", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data-cache", type=Path, help="default: a fresh temp dir")
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    return p.parse_args(argv)


class Replicas:
    """`n` chains of stage engines from one seed, merged stage by stage."""

    def __init__(self, spec: RunSpec, n: int, outer_lr: float, outer_momentum: float) -> None:
        self.chains = [
            [
                StageEngine(s, spec.engine_config())
                for s in build_stages(spec.model_config(), spec.n_stages, seed=spec.seed)
            ]
            for _ in range(n)
        ]
        self.lr, self.mu = outer_lr, outer_momentum
        first = self.chains[0]
        self.layouts = [Layout.of_tensors(e.state_dict()) for e in first]
        self.starts = [
            lay.flatten(e.state_dict()) for lay, e in zip(self.layouts, first, strict=True)
        ]
        self.momenta = [torch.zeros(lay.size) for lay in self.layouts]

    def merge(self) -> None:
        for s, layout in enumerate(self.layouts):
            vectors = [layout.flatten(chain[s].state_dict()) for chain in self.chains]
            merged = weighted_mean(vectors, [1.0] * len(vectors))
            if self.lr > 0:
                merged, self.momenta[s] = outer_step(
                    self.starts[s], merged, self.momenta[s], lr=self.lr, mu=self.mu
                )
            tensors = layout.unflatten(merged)
            for chain in self.chains:
                chain[s].load_state_dict(tensors)
            self.starts[s] = merged


def train(args: argparse.Namespace, spec: RunSpec, data: Dataset, n: int) -> dict[str, Any]:
    replicas = Replicas(spec, n, args.outer_lr, args.outer_momentum)
    groups = spec.batches_per_window // spec.accumulate
    every = args.merge_every * n if args.merge_every else groups
    windows, steps = [], []
    for window in range(args.windows):
        losses = []
        for group in range(groups):
            chain = replicas.chains[group % n]
            total = 0.0
            for micro in range(spec.accumulate):
                index = group * spec.accumulate + micro
                x, y = data.batch(
                    spec.data_seed, window, index, batch_size=spec.batch_size, seq_len=spec.seq_len
                )
                total += run_micro_batch(chain, (window, index), x, y)
            losses.append(total / spec.accumulate)
            if n > 1 and ((group + 1) % every == 0 or group + 1 == groups):
                replicas.merge()
        steps += losses
        windows.append(sum(losses) / len(losses))
    return {"replicas": n, "loss_per_window": windows, "step_losses": steps}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_determinism(threads=args.threads)
    spec = run_spec(args)
    cache = args.data_cache or Path(tempfile.mkdtemp(prefix="tessera-replicas-"))
    data = build_dataset(spec.data_config(cache))
    one = train(args, spec, data, 1)
    many = train(args, spec, data, args.replicas)
    per_replica = spec.batches_per_window // spec.accumulate // args.replicas
    end = args.windows * per_replica
    matched = one["step_losses"][end - per_replica : end]
    final = many["loss_per_window"][-1]
    out = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "data_cache")},
        "loss_per_window": {
            "one_process": one["loss_per_window"],
            "replicas": many["loss_per_window"],
        },
        "loss_ratio": final / one["loss_per_window"][-1],
        "loss_ratio_step_matched": final / (sum(matched) / len(matched)),
    }
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
