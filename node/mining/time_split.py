"""Where a miner's time goes, for `/status` → `miner.time` and `bench/pipeline.py`.

The compute thread's wall time splits into its jobs' parts (engine compute, tensor
(de)serialisation, digests, and whatever else a job does) and the time it waits for input; these
shares sum to 1. Concurrent with it: on the event loop, envelope work (sealing: encode, digest,
tag or signature; opening: head checks, tag or signature, digest, decode) and the time sends of
activations and gradients wait for their acknowledgement; on other threads, retention (blobs
into the store) and checkpoint saves. Those shares overlap the compute thread's and each other.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

JOB_PARTS = ("compute", "serialise", "digests")


class Laps:
    """Splits a stretch of one thread's time into named parts: `lap(part)` books the time since
    the previous lap (or the start) to `part`."""

    __slots__ = ("_last", "seconds")

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[part] = self.seconds.get(part, 0.0) + now - self._last
        self._last = now


def breakdown(
    *,
    wall_s: float,
    job_s: float,
    job_parts: Mapping[str, float],
    concurrent: Mapping[str, float],
) -> dict[str, Any]:
    """The shares of `wall_s` (from the first job's start to the latest one's end) of each part;
    raw seconds beside them."""
    if wall_s <= 0:
        return {"wall_s": 0.0}
    parts = {p: job_parts.get(p, 0.0) for p in JOB_PARTS}
    thread = {p: s / wall_s for p, s in parts.items()}
    thread["other_job_work"] = max(job_s - sum(parts.values()), 0.0) / wall_s
    thread["waiting_for_input"] = max(wall_s - job_s, 0.0) / wall_s
    return {
        "wall_s": round(wall_s, 3),
        "compute_thread": {p: round(v, 4) for p, v in thread.items()},
        "concurrent": {p: round(s / wall_s, 4) for p, s in sorted(concurrent.items())},
        "seconds": {
            "jobs": round(job_s, 3),
            **{p: round(s, 3) for p, s in parts.items()},
            **{p: round(s, 3) for p, s in sorted(concurrent.items())},
        },
    }
