"""Start-up time and idle memory of a real `tessera node` process.

Starts the node RUNS times with a fresh home, measures seconds from spawn until its endpoints file
says it is ready (store, HTTP and libp2p up), then its RSS after IDLE seconds, and SIGTERM-to-exit
time. Prints one JSON object (medians and all samples).

    python bench/node_startup.py --runs 5 --idle 5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scratch import scratch_dir


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def one_run(idle_s: float) -> dict[str, float]:
    with scratch_dir("tessera-bench-") as home:
        return measured_run(home, idle_s)


def measured_run(home: Path, idle_s: float) -> dict[str, float]:
    start = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "node",
            "--home",
            str(home),
            "--role",
            "miner",
            "--http",
            "127.0.0.1:0",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoints = home / "endpoints.json"
    while not endpoints.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode}")
        time.sleep(0.01)
    ready = time.monotonic() - start
    time.sleep(idle_s)
    rss = rss_mib(proc.pid)
    stop_start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    return {
        "ready_s": ready,
        "idle_rss_mib": rss,
        "stop_s": time.monotonic() - stop_start,
        "exit_code": code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before RSS")
    args = parser.parse_args()
    os.chdir(Path(__file__).parents[1])
    runs = [one_run(args.idle) for _ in range(args.runs)]
    out: dict[str, object] = {
        key: statistics.median(r[key] for r in runs)
        for key in ("ready_s", "idle_rss_mib", "stop_s")
    }
    out["exit_codes"] = sorted({r["exit_code"] for r in runs})
    out["runs"] = runs
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
