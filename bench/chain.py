"""Chain figures: one Yuma consensus epoch (`verification.yuma.epoch`) at a full subnet's size.

A subnet of `--uids` uids (256, subtensor's default `max_allowed_uids`), `--validators` of them
staked validators that each set weights on every miner (random, so consensus, clipping and
bonds all do work) with bonds from earlier epochs; Yuma 3 with liquid alpha and the classic
bonds are timed alike. Prints JSON: the median of `--repeat` epochs in milliseconds per variant,
`yuma_epoch_ms_256` being Yuma 3's at 256 uids (goal: under 50 ms).

    python bench/chain.py --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verification.yuma import EpochInputs, epoch


def inputs(uids: int, validators: int, seed: int) -> EpochInputs:
    rng = np.random.default_rng(seed)
    stake = np.zeros(uids)
    stake[:validators] = rng.pareto(1.5, validators) + 1.0
    weights = np.zeros((uids, uids))
    weights[:validators, validators:] = rng.random((validators, uids - validators))
    bonds = np.zeros((uids, uids))
    bonds[:validators, validators:] = rng.random((validators, uids - validators)) * 0.1
    return EpochInputs(
        stake=stake,
        weights=weights,
        bonds=bonds,
        validator_permit=stake > 0,
        last_update=np.full(uids, 10_000, dtype=np.int64),
        block_at_registration=rng.integers(0, 9_000, uids).astype(np.int64),
        current_block=10_000,
        liquid_alpha=True,
    )


def timed(x: EpochInputs, repeat: int) -> float:
    epoch(x)  # warm-up
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        epoch(x)
        runs.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(runs), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--uids", type=int, default=256)
    parser.add_argument("--validators", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    x = inputs(args.uids, args.validators, seed=0)
    out: dict[str, Any] = {
        "uids": args.uids,
        "validators": args.validators,
        f"yuma_epoch_ms_{args.uids}": timed(x, args.repeat),
        "classic_epoch_ms": timed(dataclasses.replace(x, yuma3=False), args.repeat),
        "goal": "yuma_epoch_ms_256 < 50",
    }
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
