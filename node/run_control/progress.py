"""The run's figures for `/status`: per-window history and the running totals."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from node.orchestration import Phase, RunState
from node.run_control.history import merged_counts


def window_summary(record: dict[str, Any]) -> dict[str, Any]:
    losses = list(record.get("losses", {}).values())
    tokens = int(record.get("tokens", 0))
    seconds = float(record.get("seconds", 0.0))
    return {
        "window": record["window"],
        "loss": sum(losses) / len(losses) if losses else None,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "completed": record.get("completed", 0),
        "dropped": record.get("dropped", 0),
        "eval": record.get("eval", {}),
        "weights": record.get("weights", {}),
        "versions": record.get("versions", {}),
        "merged": merged_counts(record),
    }


def run_progress(
    state: RunState,
    closed: Sequence[dict[str, Any]],
    recent_losses: Sequence[float],
    *,
    tokens_per_batch: int,
    accumulate: int,
    earlier: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Optimizer steps, tokens and tokens/s over the run (the `closed` windows, the open one and
    the `earlier` totals of windows the history forgot), and the latest group's mean loss."""
    now = time.time() if now is None else now
    earlier = earlier or {}
    batches = sum(int(r.get("completed", 0)) for r in closed) + state.completed
    batches += int(earlier.get("completed", 0))
    seconds = sum(float(r.get("seconds", 0.0)) for r in closed) + float(earlier.get("seconds", 0))
    if state.phase is Phase.TRAIN and state.batches_total and state.issued:
        seconds += max(now - state.window_started_at, 0.0)
    tokens = batches * tokens_per_batch
    loss: float | None = None
    if recent_losses:
        last = list(recent_losses)[-accumulate:]
        loss = sum(last) / len(last)
    elif closed and closed[-1].get("loss") is not None:
        loss = closed[-1]["loss"]
    return {
        "step": batches // accumulate,
        "batches": batches,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "loss": loss,
    }


def total_work(
    closed: Sequence[dict[str, Any]],
    current: dict[str, dict[str, int]],
    earlier: dict[str, dict[str, int]] | None = None,
) -> Any:
    """{peer_id: {"forward": n, "backward": n}} over the closed windows, the open one and the
    `earlier` work of windows the history forgot."""
    totals: dict[str, dict[str, int]] = {}
    for per_window in [earlier or {}, *(r.get("work", {}) for r in closed), current]:
        for peer, counts in per_window.items():
            slot = totals.setdefault(peer, {"forward": 0, "backward": 0})
            for direction, n in counts.items():
                slot[direction] = slot.get(direction, 0) + int(n)
    return totals
