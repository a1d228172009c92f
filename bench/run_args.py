"""The training run's options shared by the training benches (pipeline, quality, replicas), and
the `RunSpec` they describe."""

from __future__ import annotations

import argparse

from training.presets import PRESETS
from training.run_spec import RunSpec


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The run's options (`run_spec`), shared by bench/pipeline.py, quality.py and replicas.py."""
    p.add_argument("--model", default="small", choices=sorted(PRESETS))
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--batches-per-window", type=int, default=64)
    p.add_argument("--accumulate", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, help="default: the preset's")


def run_spec(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        model=args.model,
        n_stages=args.stages,
        seed=args.seed,
        data_seed=args.data_seed,
        vocab_size=args.vocab_size or PRESETS[args.model].vocab_size,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        batches_per_window=args.batches_per_window,
        accumulate=args.accumulate,
        lr=args.lr,
    )
