"""Dashboard benchmark: does watching a node slow its training?

Runs one devnet (`tessera devnet --no-chain`, tiny model by default) and, while it trains,
switches a set of dashboard clients on and off in blocks of windows: `--clients` event streams
(`/events`, the page's live feed) open on each watched node (`--watch`, default the orchestrator
and miner0), reading every snapshot, for one block; none for the next. The first window of each
block is left out (the clients connect or leave during it), as are the warm-up windows. Both
conditions run in the same processes, interleaved, so the machine's drift hits both alike.

Prints one JSON object: `tokens_per_s_off` and `tokens_per_s_on` (tokens ÷ seconds over the
measured windows of each condition, from the orchestrator's window records),
`tokens_per_s_ratio` (on ÷ off; goal >= 0.95), the snapshots and bytes each client received and
every window's figures, and per watched node the snapshots its feed built and the CPU
milliseconds they took (`feed`, from its /metrics).

    python bench/dashboard.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
URL_LINE = re.compile(r"^devnet: (\S+)\s+(http://\S+)\s+12D3")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--clients", type=int, default=10, help="event streams per watched node")
    p.add_argument("--watch", default="orchestrator,miner0", help="nodes the clients watch")
    p.add_argument("--warmup", type=int, default=2, help="windows before the first block")
    p.add_argument("--blocks", type=int, default=12, help="blocks, alternately off and on")
    p.add_argument("--block-windows", type=int, default=3, help="windows per block")
    p.add_argument("--batches-per-window", type=int, default=32)
    p.add_argument("--accumulate", type=int, default=4)
    p.add_argument("--interval", type=float, default=2.0, help="http.dashboard.interval_s")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    return p.parse_args(argv)


class Clients:
    """`n` event streams per URL, reading snapshots until closed."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._tasks: list[asyncio.Task[None]] = []
        self.snapshots: list[int] = []
        self.bytes: list[int] = []

    def open(self, urls: list[str], n: int) -> None:
        for url in urls:
            for _ in range(n):
                self.snapshots.append(0)
                self.bytes.append(0)
                self._tasks.append(asyncio.create_task(self._read(url, len(self.bytes) - 1)))

    async def _read(self, url: str, slot: int) -> None:
        async with self._session.get(f"{url}/events") as response:
            if response.status != 200:
                raise RuntimeError(f"{url}/events answered {response.status}")
            async for line in response.content:
                self.bytes[slot] += len(line)
                if line.startswith(b"event: snapshot"):
                    self.snapshots[slot] += 1

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise RuntimeError(f"dashboard clients failed: {failed[:3]}")
        self._tasks = []


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The node's /metrics samples by name and labels (the same cost in both conditions)."""
    try:
        async with session.get(f"{url}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return {}
    found = re.findall(r"^(tessera_\S+) (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


def condition(args: argparse.Namespace, window: int) -> str:
    """ "warmup", "skip" (a block's first window), "off" or "on"."""
    if window < args.warmup:
        return "warmup"
    block, offset = divmod(window - args.warmup, args.block_windows)
    if offset == 0:
        return "skip"
    return "on" if block % 2 else "off"


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    windows = args.warmup + args.blocks * args.block_windows
    cmd = [
        sys.executable, "-m", "node", "devnet", "--home", str(root / "devnet"), "--no-chain",
        "--model", args.model, "--stages", "3", "--windows", str(windows),
        "--batches-per-window", str(args.batches_per_window), "--accumulate", str(args.accumulate),
        "--summary", str(root / "summary.json"), "--timeout", str(args.timeout),
        "--set", f"http.dashboard.interval_s={args.interval}",
    ]  # fmt: skip
    log = (root / "devnet.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=log
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    started = time.monotonic()
    while "devnet: training" not in (line := (await proc.stdout.readline()).decode()):
        if not line:
            raise SystemExit(f"bench: devnet ended before training; {root / 'devnet.log'}")
        if found := URL_LINE.match(line):
            urls[found.group(1)] = found.group(2)
    watched = {name: urls[name] for name in {"orchestrator", *args.watch.split(",")}}
    streamed = [urls[name] for name in args.watch.split(",")]
    feeds: dict[str, dict[str, float]] = {}
    drain = asyncio.create_task(proc.stdout.read())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        clients = Clients(session)
        on = False
        while proc.returncode is None:
            for name, url in watched.items():
                feeds[name] = await scrape(session, url) or feeds.get(name, {})
            figure = feeds.get("orchestrator", {}).get('tessera_run{figure="window"}')
            window = None if figure is None else int(figure)
            want = (
                window is not None
                and window >= args.warmup
                and ((window - args.warmup) // args.block_windows % 2 == 1)
            )
            if want and not on:
                clients.open(streamed, args.clients)
            elif on and not want:
                await clients.close()
            on = want
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.5)
        await clients.close()
    await drain
    summary_path = root / "summary.json"
    if proc.returncode != 0 or not summary_path.exists():
        raise SystemExit(f"bench: devnet failed ({proc.returncode}); see {root / 'devnet.log'}")
    summary = json.loads(summary_path.read_text())
    per_window = [{**w, "condition": condition(args, int(w["window"]))} for w in summary["windows"]]
    totals = {
        c: (
            sum(w["tokens"] for w in per_window if w["condition"] == c),
            sum(w["seconds"] for w in per_window if w["condition"] == c),
        )
        for c in ("off", "on")
    }
    tps = {c: t / s if s else 0.0 for c, (t, s) in totals.items()}
    return {
        "model": args.model,
        "clients_per_node": args.clients,
        "watched": args.watch.split(","),
        "interval_s": args.interval,
        "tokens_per_s_off": round(tps["off"], 1),
        "tokens_per_s_on": round(tps["on"], 1),
        "tokens_per_s_ratio": round(tps["on"] / tps["off"], 4) if tps["off"] else None,
        "measured_windows": {c: sum(w["condition"] == c for w in per_window) for c in tps},
        "snapshots_per_client": sorted(clients.snapshots),
        "feed": {
            name: {
                event: feeds.get(name, {}).get(f'tessera_dashboard_events_total{{event="{event}"}}')
                for event in ("snapshots", "build_ms", "dropped", "refused")
            }
            for name in args.watch.split(",")
        },
        "bytes_per_client_max": max(clients.bytes, default=0),
        "windows": [
            {k: w.get(k) for k in ("window", "condition", "tokens", "seconds", "loss")}
            for w in per_window
        ],
        "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tessera-bench-dashboard-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
