"""The per-miner time breakdown (`/status` → `miner.time`) as a text table for bench output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

THREAD = ("compute", "serialise", "digests", "other_job_work", "waiting_for_input")
CONCURRENT = ("seal", "open", "sending", "retention", "save")


def time_table(per_miner: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per miner: its compute thread's shares of wall time (these sum to 1), then the
    concurrent shares (event loop and other threads, overlapping the thread's)."""
    head = ["miner", "wall_s", *THREAD, "|", *CONCURRENT]
    rows = [head]
    for name, doc in sorted(per_miner.items()):
        thread = doc.get("compute_thread") or {}
        concurrent = doc.get("concurrent") or {}
        rows.append(
            [
                name,
                f"{doc.get('wall_s', 0.0):.1f}",
                *(f"{thread.get(p, 0.0):.3f}" for p in THREAD),
                "|",
                *(f"{concurrent.get(p, 0.0):.3f}" for p in CONCURRENT),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
