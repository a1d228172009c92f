"""Helpers for devnet integration tests: a tiny, fast run and polling of the orchestrator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from node.devnet.net import Devnet, DevnetPlan

TINY_RUN: dict[str, Any] = {
    "model": "tiny",
    "vocab_size": 512,
    "batch_size": 4,
    "seq_len": 64,
    "batches_per_window": 8,
    "accumulate": 2,
    "lr": 0.004,
    "code_max_bytes": 1_000_000,
    "prose_max_bytes": 1_000_000,
    "math_documents": 500,
}
"""A run that trains in seconds and whose loss falls clearly within one window."""

FAST_FAILOVER = [
    # Short leases and liveness timeouts, so a dead miner's routes are re-issued quickly.
    "orchestrator.leases.initial_hop_s=1.0",
    "orchestrator.leases.min_s=2.0",
    "orchestrator.leases.max_s=8.0",
    "orchestrator.registry.suspect_after_s=5.0",
    "orchestrator.registry.gone_after_s=10.0",
    "orchestrator.assign_timeout_s=30.0",
    "orchestrator.close_timeout_s=10.0",
    "orchestrator.eval_batches=1",
    # Reconnect fast to a restarted orchestrator.
    "p2p.backoff_max_s=1.0",
    "p2p.peer_exchange_interval_s=0.5",
]


def tiny_run_args() -> list[str]:
    """The tiny run as `tessera devnet` flags plus `--set`s for the corpus size."""
    run = TINY_RUN
    args = ["--model", run["model"], "--vocab-size", str(run["vocab_size"])]
    for key in ("batch_size", "seq_len", "batches_per_window", "accumulate", "lr"):
        args += [f"--{key.replace('_', '-')}", str(run[key])]
    for key in ("code_max_bytes", "prose_max_bytes", "math_documents"):
        args += ["--set", f"orchestrator.run.{key}={run[key]}"]
    return args


def tiny_plan(
    data_cache: Path, *, windows: int, miners: int | None = None, sets: list[str] | None = None
) -> DevnetPlan:
    return DevnetPlan(
        stages=3,
        miners=miners,
        validators=1,
        windows=windows,
        run=dict(TINY_RUN),
        data_cache=data_cache,
        sets=[*FAST_FAILOVER, *(sets or [])],
    )


@asynccontextmanager
async def running(root: Path, plan: DevnetPlan) -> AsyncIterator[Devnet]:
    """A started devnet, stopped (SIGTERM, then SIGKILL) however the test ends."""
    net = Devnet(root, plan, quiet=True)
    try:
        await net.start(timeout=60.0)
        yield net
    finally:
        await net.stop(timeout=10.0)


async def orchestrator_section(net: Devnet) -> dict[str, Any] | None:
    doc = await net.orchestrator.status()
    section = (doc or {}).get("orchestrator")
    return section if isinstance(section, dict) else None


async def wait_for(
    net: Devnet,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    what: str,
    poll_s: float = 0.25,
) -> dict[str, Any]:
    """Polls the orchestrator's status section until `predicate` holds; returns that section."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: dict[str, Any] | None = None
    while loop.time() < deadline:
        section = await orchestrator_section(net)
        if section is not None:
            last = section
            if predicate(section):
                return section
        await asyncio.sleep(poll_s)
    logs = {n.name: tail(n.log_path) for n in net.nodes}
    raise AssertionError(f"timed out waiting for {what}; last status {last}; logs {logs}")


def tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def losses(section: dict[str, Any]) -> list[float]:
    return [w["loss"] for w in section.get("history", []) if w.get("loss") is not None]


def stage_holder(section: dict[str, Any], stage: int) -> str | None:
    for entry in section.get("stages", []):
        if entry["stage"] == stage and entry["miners"]:
            return str(entry["miners"][0]["peer_id"])
    return None
