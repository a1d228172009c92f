"""The dashboard's live feed: one snapshot built per interval, whatever the number of watchers.

While at least one client listens, the feed builds the dashboard document every `interval_s`,
encodes it once and hands the same bytes to every client's queue. A queue holds two snapshots at
most; a client too slow to take them loses the older one, so a stalled browser costs a bounded
amount of memory and never slows the node. With no client listening nothing is built.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.service import Service

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]


@dataclass(kw_only=True, slots=True)
class DashboardConfig:
    enabled: bool = True
    """Serve the dashboard at `/` and its event stream at `/events`."""
    interval_s: float = 2.0
    """Seconds between two snapshots sent to the dashboard's clients."""
    max_clients: int = 32
    """Event streams open at once; more are refused (503, `too_many_clients`)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s >= 0.05):
            raise ValueError(f"dashboard.interval_s must be at least 0.05, got {self.interval_s}")
        if self.max_clients < 1:
            raise ValueError(f"dashboard.max_clients must be >= 1, got {self.max_clients}")


class DashboardFeed(Service):
    name = "dashboard-feed"

    def __init__(self, config: DashboardConfig, snapshot: Snapshot) -> None:
        super().__init__()
        self.config = config
        self._snapshot = snapshot
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._listening = asyncio.Event()
        self._latest: tuple[float, bytes] | None = None
        self._build_s = 0.0
        self.counters = {
            "snapshots": 0,
            "snapshot_failed": 0,
            "dropped": 0,
            "refused": 0,
            "build_ms": 0,
        }

    @property
    def clients(self) -> int:
        return len(self._clients)

    def subscribe(self) -> asyncio.Queue[bytes | None] | None:
        """A queue of encoded snapshots (None at the end), or None when the feed is full."""
        if len(self._clients) >= self.config.max_clients:
            self.counters["refused"] += 1
            return None
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2)
        self._clients.add(queue)
        self._listening.set()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._clients.discard(queue)
        if not self._clients:
            self._listening.clear()

    def current(self) -> bytes:
        """The newest snapshot if it is younger than the interval, else a fresh one."""
        if self._latest is None or time.monotonic() - self._latest[0] > self.config.interval_s:
            self._build()
        return self._latest[1] if self._latest is not None else b"{}"  # none built yet

    def close(self) -> None:
        """End every client's stream (the server is shutting down)."""
        for queue in list(self._clients):
            _offer(queue, None)
        self._clients.clear()
        self._listening.clear()

    async def run(self) -> None:
        try:
            while True:
                await self._listening.wait()
                if self._build():
                    data = self._latest[1] if self._latest else b""
                    for queue in list(self._clients):
                        if _offer(queue, data):
                            self.counters["dropped"] += 1
                await asyncio.sleep(self.config.interval_s)
        finally:
            self.close()

    def _build(self) -> bool:
        started = time.thread_time()
        try:
            doc = finite(self._snapshot())
            data = json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str).encode()
        except Exception:  # a role's status failing must not end the feed
            self.counters["snapshot_failed"] += 1
            log.exception("dashboard snapshot failed")
            return False
        finally:
            self._build_s += time.thread_time() - started
            self.counters["build_ms"] = int(self._build_s * 1000)
        self._latest = (time.monotonic(), data)
        self.counters["snapshots"] += 1
        return True


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None (browsers reject them in JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _offer(queue: asyncio.Queue[bytes | None], item: bytes | None) -> bool:
    """Put `item`, dropping the oldest queued snapshot when full; True if one was dropped."""
    dropped = False
    if queue.full():
        queue.get_nowait()
        dropped = True
    queue.put_nowait(item)
    return dropped
