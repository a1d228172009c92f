"""Incentive benchmark: what cheaters, a slow honest miner and honest miners are paid.

Devnets (tiny model, 3 stages, `--windows` windows, no chain) with the validator's default
audit sampling (`validator.miners_per_window` = 2 and the sampling rule's floor), one per group
of fault kinds so that every stage keeps honest miners:
  - "cheats": `--miners 12`, miners 0-5 run lazy, random, stale, copycat, lazy:0.25 (lazy in
    one window of four) and slow (honest at half speed), the other six honest;
  - "stalls": `--miners 8`, miners 0-1 run free-rider and late, the other six honest.
At the end each miner's share of the validator's weights (what it sets on a chain, with no burn:
the whole pay rule of docs/pay.md, validated work times quality and capacity factors within
stage weights; its IOTA incentives normalised when the quality screen is off) is divided by the
median honest miner's share of the same devnet. Prints one JSON object:
`{"miners": {NAME: {"fault", "share_vs_median_honest", "share", "work_share", "pass", "fail",
"inconclusive", "first_fail_window", "quality_multiplier", "capacity_factor"}}, "goals", "met",
"groups"}`, where `work_share` is the
miner's share of the validated work (backward units in the validator's horizon of the miners
no fail bars). Goals: every cheater
below 0.10 of the median honest share; the slow miner's share within 10 % of its work share; no
honest miner ever failed.

    python bench/incentives.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scratch import scratch_dir

GROUPS: dict[str, tuple[int, list[str]]] = {
    "cheats": (12, ["lazy", "random", "stale", "copycat", "lazy:0.25", "slow"]),
    "stalls": (8, ["free-rider", "late"]),
}
NOT_CHEATS = ("honest", "slow")


def run_group(
    args: argparse.Namespace, root: Path, miners: int, kinds: list[str]
) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    summary = root / "summary.json"
    cmd = [sys.executable, "-m", "node", "devnet", "--no-chain", "--home", str(root / "net")]
    cmd += ["--stages", "3", "--miners", str(miners), "--windows", str(args.windows)]
    cmd += ["--model", "tiny", "--batch-size", "4", "--seq-len", "64"]
    cmd += ["--faults", ",".join(kinds), "--summary", str(summary)]
    cmd += ["--timeout", str(args.timeout), "--audit-wait", "240"]
    cmd += ["--set", f"validator.miners_per_window={args.miners_per_window}"]
    if args.data_cache:
        cmd += ["--data-cache", str(args.data_cache)]
    with (root / "devnet.log").open("w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if not summary.exists():
        raise RuntimeError(f"devnet exited {done.returncode}; see {root / 'devnet.log'}")
    doc: dict[str, Any] = json.loads(summary.read_text())
    return doc


def miners_of(doc: dict[str, Any], kinds: list[str]) -> dict[str, dict[str, Any]]:
    validators: list[dict[str, Any]] = list((doc.get("audits") or {}).values())
    first = validators[0] if validators else {}
    audits: dict[str, Any] = first.get("miners") or {}
    work = {  # validated: a barred miner's claimed units are not
        n: int(m.get("work", 0)) if m.get("barred_through") is None else 0
        for n, m in audits.items()
    }
    quality = first.get("quality") or {}
    if quality.get("weights"):  # the weights the validator sets under the whole pay rule
        pay = {n: float(w) for n, w in quality["weights"].items()}
    else:  # the quality screen off: its IOTA incentives
        pay = {n: float(m.get("incentive", 0.0)) for n, m in audits.items()}
    total_pay, total_work = sum(pay.values()), sum(work.values())
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(doc.get("work_per_miner") or {}):
        index = int(name.removeprefix("miner"))
        m: dict[str, Any] = audits.get(name) or {}
        out[name] = {
            "fault": kinds[index] if index < len(kinds) else "honest",
            "share": pay.get(name, 0.0) / total_pay if total_pay else 0.0,
            "work_share": work.get(name, 0) / total_work if total_work else 0.0,
            **{k: int(m.get(k, 0)) for k in ("pass", "fail", "inconclusive")},
            "first_fail_window": m.get("first_fail"),
            "quality_multiplier": (quality.get("quality_multipliers") or {}).get(name),
            "capacity_factor": (quality.get("capacity_factors") or {}).get(name),
        }
    honest = [m["share"] for m in out.values() if m["fault"] == "honest"]
    median = statistics.median(honest) if honest else 0.0
    for m in out.values():
        m["share_vs_median_honest"] = round(m["share"] / median, 4) if median else None
        m["share"], m["work_share"] = round(m["share"], 4), round(m["work_share"], 4)
    return out


def goals(miners: dict[str, dict[str, Any]]) -> dict[str, bool]:
    cheaters = [m for m in miners.values() if m["fault"] not in NOT_CHEATS]
    slow = [m for m in miners.values() if m["fault"] == "slow"]
    return {
        "cheaters_below_0.10": all((m["share_vs_median_honest"] or 0) < 0.10 for m in cheaters),
        "slow_within_10pct_of_work": all(
            m["work_share"] > 0 and abs(m["share"] / m["work_share"] - 1) <= 0.10 for m in slow
        ),
        "no_honest_fail": all(m["fail"] == 0 for m in miners.values() if m["fault"] in NOT_CHEATS),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--miners-per-window", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per devnet run")
    parser.add_argument("--groups", nargs="*", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--data-cache", type=Path, help="shared corpus/tokenizer cache")
    args = parser.parse_args()
    with scratch_dir("tessera-incentives-") as root:
        out = run(args, root)
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Every group's devnet under `root`, and the goals over all of their miners."""
    args.data_cache = args.data_cache or root / "data"
    miners: dict[str, dict[str, Any]] = {}
    groups: dict[str, Any] = {}
    for group in args.groups:
        count, kinds = GROUPS[group]
        started = time.monotonic()
        doc = run_group(args, root / group, count, kinds)
        found = miners_of(doc, kinds)
        miners.update({f"{group}/{name}": m for name, m in found.items()})
        groups[group] = {
            "wall_s": round(time.monotonic() - started, 1),
            "complete": doc.get("complete"),
            "final_loss": doc.get("final_loss"),
            "goals": goals(found),
        }
        if not args.json:
            print(f"{group}: {json.dumps(groups[group])}", file=sys.stderr)
    met = goals(miners)
    out = {"miners": miners, "goals": met, "met": all(met.values()), "groups": groups,
           "windows": args.windows}  # fmt: skip
    return out


if __name__ == "__main__":
    raise SystemExit(main())
