"""Forgetting old windows' records: receipts, disputes, counts, batch records and their routes.

The run's history keeps each closed window's summary (work per miner, losses, checkpoints), and
validators audit a window shortly after it closes; the per-receipt and per-route records of
windows older than `keep_windows` serve no one and would grow the store by every batch of every
window. `prune` deletes them a bounded number of windows at a time (one write transaction per
window), oldest first.
"""

from __future__ import annotations

from node.orchestration.keys import RECEIPTS, ROUTES, Keys
from store import Store


class RecordPruner:
    def __init__(self, store: Store, keys: Keys) -> None:
        self._store = store
        self._keys = keys
        self._next = 0
        """The oldest window whose records may still exist."""

    def prune(self, before: int, max_windows: int = 8) -> int:
        """Delete the records of windows `< before`, at most `max_windows` of them; returns how
        many windows were pruned."""
        if self._next == 0:
            self._next = self._oldest()
        done = 0
        while self._next < before and done < max_windows:
            self._prune_window(self._next)
            self._next += 1
            done += 1
        return done

    def _oldest(self) -> int:
        """The oldest window with a batch record (where pruning resumes after a restart)."""
        prefix = f"{self._keys.run}/batch/"
        with self._store.read() as txn:
            for key, _ in txn.scan(ROUTES, prefix):
                return int(key.decode()[len(prefix) :].split("/", 1)[0])
        return 0

    def _prune_window(self, window: int) -> None:
        keys = self._keys
        with self._store.write() as txn:
            prefixes = (keys.window_receipts(window), keys.miner_receipts(window))
            for prefix in (*prefixes, keys.disputes(window)):
                for key, _ in list(txn.scan(RECEIPTS, prefix)):
                    txn.delete(RECEIPTS, key)
            txn.delete(RECEIPTS, self._keys.counts(window))
            for key, record in list(txn.scan(ROUTES, self._keys.batches(window))):
                for route_id in (record or {}).get("routes", []):
                    txn.delete(ROUTES, self._keys.route(route_id))
                txn.delete(ROUTES, key)
