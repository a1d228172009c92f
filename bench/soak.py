"""Soak benchmark: a devnet trains for N minutes while every node's resources are sampled.

Runs `tessera devnet` (tiny model, 3 stages x 2 miners, a validator and the chain node; a map of
`--map-mib` per node, so the store's blob budget is reached within the run) for `--minutes`,
then stops it with Ctrl-C. Every `--every` seconds it reads, per node, its RSS and open file
descriptors (/proc of its pid), its LMDB use and blob bytes and count (`/status` → `store`).

Prints one JSON object: per node the figures at start, after warm-up (`--warmup-minutes`,
default a quarter of the run, at most 10) and at the end, the largest after warm-up, the level
(median) of every 5 minutes, and
- `rss_flat` / `fds_flat`: no 5-minute level after warm-up above 110 % of the first one (a leak
  raises the level; a burst of pooled connections, kept idle for a minute, raises one sample),
  and `rss_max_flat` / `fds_max_flat`, the stricter rule: no single sample above it;
- `lmdb_flat` / `lmdb_data_flat`: the map's high-water / the pages holding data never above
  110 % of their value after warm-up, and `lmdb_used_mib_per_hour`, the high-water's
  least-squares slope after warm-up (10 % of a 350 MiB store hides a creep of 0.5 MiB a
  minute over 60 minutes; the slope does not);
the run's windows and first and last loss; `survivors_up` (no node exited). `--samples FILE`
keeps every sample.

    python bench/soak.py --minutes 60 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("rss_mib", "fds", "lmdb_used_mib", "lmdb_data_mib", "blob_mib", "blobs")
LEVEL_S = 300.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--warmup-minutes", type=float, help="default: minutes / 4, at most 10")
    p.add_argument("--samples", type=Path, help="write every sample here (JSON)")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--model", default="tiny")
    p.add_argument("--map-mib", type=int, default=512, help="store.map_size_mib of every node")
    p.add_argument("--home", type=Path, help="keep the devnet here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    return p.parse_args(argv)


def proc_figures(pid: int) -> dict[str, float]:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return {"rss_mib": round(rss, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def running_nodes(home: Path) -> dict[str, dict[str, Any]]:
    """Each running node's endpoints file (pid, http), by its home directory's name."""
    out = {}
    for path in sorted(home.glob("*/endpoints.json")):
        with contextlib.suppress(OSError, ValueError):
            out[path.parent.name] = json.loads(path.read_text())
    return out


async def sample(session: aiohttp.ClientSession, home: Path) -> dict[str, dict[str, float]]:
    """Per node (by home directory name): its process and store figures now."""
    out: dict[str, dict[str, float]] = {}
    for name, ends in running_nodes(home).items():
        with contextlib.suppress(OSError, ValueError, aiohttp.ClientError, TimeoutError):
            figures = proc_figures(int(ends["pid"]))
            async with session.get(f"{ends['http']}/status") as response:
                store = (await response.json())["store"]
            figures |= {
                "lmdb_used_mib": round(store["used"] / 2**20, 1),
                "lmdb_data_mib": round(store.get("data", 0) / 2**20, 1),
                "blob_mib": round(store.get("blob_bytes", 0) / 2**20, 1),
                "blobs": store.get("blobs", 0),
            }
            out[name] = figures
    return out


Samples = list[tuple[float, dict[str, dict[str, float]]]]


def summarise(samples: Samples, warm_s: float) -> Any:
    names = sorted({n for _, s in samples for n in s})
    report: dict[str, Any] = {}
    for name in names:
        series = [(t, s[name]) for t, s in samples if name in s]
        after = [f for t, f in series if t >= warm_s] or [series[-1][1]]
        warm = after[0]
        levels = _levels([(t, f) for t, f in series if t >= warm_s])
        node: dict[str, Any] = {
            "start": series[0][1],
            "warm": warm,
            "end": series[-1][1],
            "max_after_warmup": {k: max(f[k] for f in after) for k in FIGURES},
            "levels_after_warmup": levels,
            "every_5_min": _every(series, LEVEL_S),
        }
        for key, flag in (("rss_mib", "rss"), ("fds", "fds")):
            node[f"{flag}_flat"] = all(lv[key] <= 1.10 * levels[0][key] for lv in levels)
            node[f"{flag}_max_flat"] = node["max_after_warmup"][key] <= 1.10 * warm[key]
        for key, flag in (("lmdb_used_mib", "lmdb_flat"), ("lmdb_data_mib", "lmdb_data_flat")):
            node[flag] = node["max_after_warmup"][key] <= 1.10 * warm[key]
        node["lmdb_used_mib_per_hour"] = _slope_per_hour(
            [(t, f["lmdb_used_mib"]) for t, f in series if t >= warm_s]
        )
        report[name] = node
    return report


def _slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, MiB) points, in MiB an hour."""
    if len(points) < 2:
        return None
    slope = statistics.linear_regression([t for t, _ in points], [v for _, v in points]).slope
    return round(slope * 3600, 2)


def _levels(series: list[tuple[float, dict[str, float]]]) -> list[dict[str, float]]:
    """The median RSS and descriptors of every `LEVEL_S` span of `series` (a short last span
    joins the one before)."""
    if not series:
        return []
    start = series[0][0]
    spans: dict[int, list[dict[str, float]]] = {}
    for t, f in series:
        spans.setdefault(int((t - start) // LEVEL_S), []).append(f)
    groups = list(spans.values())
    if len(groups) > 1 and len(groups[-1]) < len(groups[0]) // 2:
        groups[-2].extend(groups.pop())
    return [
        {k: statistics.median(f[k] for f in group) for k in ("rss_mib", "fds")} for group in groups
    ]


def _every(series: list[tuple[float, dict[str, float]]], step_s: float) -> list[list[float]]:
    """[minute, RSS MiB, LMDB high-water MiB, LMDB data MiB] at the first sample of every
    `step_s`."""
    out: list[list[float]] = []
    for t, f in series:
        if not out or t >= (len(out)) * step_s:
            out.append([round(t / 60, 1), f["rss_mib"], f["lmdb_used_mib"], f["lmdb_data_mib"]])
    return out


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    warm_s = 60 * (args.warmup_minutes or min(args.minutes / 4, 10.0))
    cmd = [
        sys.executable, "-m", "node", "devnet", "--home", str(root), "--model", args.model,
        "--stages", "3", "--windows", "1000000", "--set", f"store.map_size_mib={args.map_mib}",
    ]  # fmt: skip
    log = (root.parent / f"{root.name}.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    try:
        return await follow(args, root, proc, warm_s, log.name)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 120)


async def follow(
    args: argparse.Namespace,
    root: Path,
    proc: asyncio.subprocess.Process,
    warm_s: float,
    log_name: str,
) -> dict[str, Any]:
    samples: Samples = []
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while len(running_nodes(root)) < 9:
            if proc.returncode is not None:
                raise SystemExit(f"bench: devnet exited early; see {log_name}")
            await asyncio.sleep(1)
        started = time.monotonic()
        nodes = 0
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            now = await sample(session, root)
            nodes = max(nodes, len(now))
            samples.append((elapsed, now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), args.every)
            if proc.returncode is not None:
                break
        orchestrator = running_nodes(root)["orchestrator"]
        async with session.get(f"{orchestrator['http']}/status") as response:
            run_doc = (await response.json())["orchestrator"]
        survivors = proc.returncode is None and len(await sample(session, root)) == nodes
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 120)
    history = run_doc.get("history") or []
    if args.samples:
        args.samples.write_text(json.dumps(samples))
    nodes = summarise(samples, warm_s)
    return {
        "minutes": args.minutes,
        "warmup_minutes": round(warm_s / 60, 2),
        "samples": len(samples),
        "windows": len(history) + int(run_doc.get("windows_forgotten", 0)),
        "loss_first": history[0]["loss"] if history else None,
        "loss_last": history[-1]["loss"] if history else None,
        "survivors_up": survivors,
        "devnet_exit": proc.returncode,
        "nodes": nodes,
        "all_flat": all(n["rss_flat"] and n["fds_flat"] for n in nodes.values()),
        "lmdb_flat": all(n["lmdb_flat"] for n in nodes.values()),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.home:
        args.home.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run(args, args.home / "devnet"))
    else:
        with tempfile.TemporaryDirectory(prefix="tessera-soak-") as tmp:
            result = asyncio.run(run(args, Path(tmp) / "devnet"))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
