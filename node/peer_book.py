"""The node's durable record of peers it has been connected to (LMDB table `peers`)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from node.metrics import NodeMetrics
from node.service import Service
from p2p.host import P2PHost, PeerInfo
from store import MapFullError, Store

_TOUCH_EVERY_S = 10.0

log = logging.getLogger(__name__)


class PeerBook(Service):
    """Polls the host's live connections and keeps first/last-seen records for each peer."""

    name = "peer-book"

    def __init__(
        self, host: P2PHost, store: Store, metrics: NodeMetrics, *, interval_s: float = 1.0
    ):
        super().__init__()
        self._host = host
        self._store = store
        self._metrics = metrics
        self._interval_s = interval_s
        self._touched: dict[str, float] = {}
        self._warned_at = float("-inf")

    async def run(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(self._interval_s)

    def refresh(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        live = self._host.connected_peers()
        self._metrics.peers_connected.set(len(live))
        due = [p for p in live if now - self._touched.get(p.peer_id, 0.0) >= _TOUCH_EVERY_S]
        if not due:
            return
        try:
            self._record(due, now)
        except MapFullError as exc:
            self._metrics.store_errors.labels("map_full").inc()
            if now - self._warned_at >= 60.0:
                self._warned_at = now
                log.warning("peer book not updated: %s", exc)
            return
        self._touched.update((p.peer_id, now) for p in due)

    def _record(self, due: list[PeerInfo], now: float) -> None:
        with self._store.write() as txn:
            for peer in due:
                old = txn.get("peers", peer.peer_id) or {}
                txn.put(
                    "peers",
                    peer.peer_id,
                    {
                        "peer_id": peer.peer_id,
                        "addrs": list(peer.addrs),
                        "first_seen": old.get("first_seen", now),
                        "last_seen": now,
                    },
                )

    def count(self) -> int:
        with self._store.read() as txn:
            return txn.count("peers")

    def known(self) -> list[dict[str, Any]]:
        with self._store.read() as txn:
            return [record for _, record in txn.scan("peers")]
