"""Time series of the run for `/status` and the dashboard: loss per optimizer step, each miner's
throughput and the checkpoint it went on from, derived from the window records in LMDB."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def loss_curve(
    records: Sequence[dict[str, Any]], accumulate: int, limit: int = 512
) -> list[list[float]]:
    """[[step, loss], …]: the mean loss of each group of `accumulate` batches (in batch order), so
    one point per optimizer step; the open window's complete groups count too. The last `limit`."""
    points: list[list[float]] = []
    step = 0
    for record in records:
        by_batch = sorted((int(b), float(v)) for b, v in record.get("losses", {}).items())
        losses = [v for _, v in by_batch]
        complete = len(losses) if record.get("closed") else len(losses) // accumulate * accumulate
        for start in range(0, complete, accumulate):
            group = losses[start : start + accumulate]
            step += 1
            points.append([step, round(sum(group) / len(group), 5)])
    return points[-limit:]


def miner_rates(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Backward passes per second of each miner in the newest closed window."""
    closed = [r for r in records if r.get("closed")]
    if not closed:
        return {}
    last = closed[-1]
    seconds = float(last.get("seconds", 0.0))
    if seconds <= 0:
        return {}
    return {
        peer: round(int(counts.get("backward", 0)) / seconds, 3)
        for peer, counts in last.get("work", {}).items()
    }


def miner_versions(records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The merged weights version each miner went on with after the newest closed window (the
    one its stage's merge agreed on; the members' checkpoints themselves may differ)."""
    closed = [r for r in records if r.get("closed")]
    if not closed:
        return {}
    versions = closed[-1].get("versions", {})
    return {
        peer: str(versions[str(value[0])])
        for peer, value in closed[-1].get("members", {}).items()
        if str(value[0]) in versions
    }
