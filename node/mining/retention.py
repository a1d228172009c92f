"""Keeping every unit's input and output tensors for auditors, and forgetting them in time.

Each unit's raw input and output bytes go into the node's BlobStore (sha256-keyed, expiring after
`retention_s`), and one row in the "mining" table maps the unit to them:

  u/<run>/<window>/<batch>/<stage>/<direction>/<route> -> {input, output (sha256 hex),
      input_digest, output_digest (blake3, as in the receipt), weights_version, expires_ms}
  b/<blake3 hex> -> {sha256, expires_ms}   (a receipt's digest -> the blob that has it)
  x/<expires_ms>/<u/… or b/… key> -> None   (expiry index, so GC is a range scan)

Units are queued by the pipeline and written from a worker thread in one transaction every
`flush_s` or `flush_bytes`: a commit fsyncs, and committing every 16 units cost ~15-25% of the
tiny model's compute here, against ~7% (tiny) and ~2.5% (small) this way. GC removes expired
rows and blobs; when `max_bytes` is set and the blob store outgrows it, the blobs closest to
expiry go first. A full map or a store error drops the batch with a counter: retention never
stops the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from node.service import Service
from p2p.transport import Buffer
from store import BlobStore, Store, StoreError, WriteTxn

log = logging.getLogger(__name__)
TABLE = "mining"
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RetainedUnit:
    window: int
    batch: int
    stage: int
    direction: str
    route: str
    inputs: Buffer
    outputs: Buffer
    input_digest: bytes
    output_digest: bytes
    weights_version: str

    @property
    def nbytes(self) -> int:
        return memoryview(self.inputs).nbytes + memoryview(self.outputs).nbytes


def unit_key(run: str, window: int, batch: int, stage: int, direction: str, route: str) -> str:
    return f"u/{run}/{window:010d}/{batch:010d}/{stage:04d}/{direction}/{route}"


class Retention(Service):
    name = "retention"

    def __init__(
        self,
        store: Store,
        run_id: str,
        counters: Counter[str],
        seconds: MutableMapping[str, float],
        *,
        retention_s: float,
        max_bytes: int = 0,
        flush_s: float = 0.5,
        flush_bytes: int = 16 * MiB,
        max_queued_bytes: int = 256 * MiB,
        gc_interval_s: float = 60.0,
    ) -> None:
        super().__init__()
        self._store = store
        self.blobs = BlobStore(store, retention_s=retention_s)
        self._run = run_id
        self._counters = counters
        self._seconds = seconds
        self._retention_s = retention_s
        self._max_bytes = max_bytes
        self._flush_s = flush_s
        self._flush_bytes = flush_bytes
        self._max_queued_bytes = max_queued_bytes
        self._gc_interval_s = gc_interval_s
        self._queue: deque[RetainedUnit] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def add(self, unit: RetainedUnit) -> None:
        """Queue a unit for the next write (the oldest are dropped beyond the byte bound)."""
        self._queue.append(unit)
        self._queued_bytes += unit.nbytes
        while self._queued_bytes > self._max_queued_bytes and len(self._queue) > 1:
            self._queued_bytes -= self._queue.popleft().nbytes
            self._counters["retention_dropped"] += 1
        if self._queued_bytes >= self._flush_bytes:
            self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_gc = loop.time()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._flush_s)
                self._wake.clear()
                await self.flush()
                over = bool(self._max_bytes) and self.blobs.total_bytes() > self._max_bytes
                if over or loop.time() >= next_gc:
                    await asyncio.to_thread(self.gc)
                    next_gc = loop.time() + self._gc_interval_s
        finally:
            if self._queue:
                self._counters["retention_dropped"] += len(self._queue)

    async def flush(self) -> None:
        """Write everything queued so far, in one transaction (in a worker thread)."""
        if self._queue:
            units = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            await asyncio.to_thread(self._write, units)

    def _write(self, units: list[RetainedUnit]) -> None:
        started = time.perf_counter()
        now = time.time()
        expires_ms = int((now + self._retention_s) * 1000)
        try:
            with self._store.write() as txn:
                for u in units:
                    key = unit_key(self._run, u.window, u.batch, u.stage, u.direction, u.route)
                    row = {
                        "input": self._put(u.inputs, u.input_digest, now, txn),
                        "output": self._put(u.outputs, u.output_digest, now, txn),
                        "input_digest": u.input_digest,
                        "output_digest": u.output_digest,
                        "weights_version": u.weights_version,
                    }
                    _put_expiring(txn, key, row, expires_ms)
        except (StoreError, ValueError) as exc:
            self._counters["retention_failed"] += len(units)
            log.warning("could not retain %d units: %s", len(units), exc)
        else:
            self._counters["retained_units"] += len(units)
        self._seconds["retention"] += time.perf_counter() - started

    def _put(self, data: Buffer, blake3: bytes, now: float, txn: WriteTxn) -> str:
        view = memoryview(data)
        if not view.nbytes:
            return ""
        sha = self.blobs.put(view, now=now, txn=txn)
        expires_ms = int((now + self._retention_s) * 1000)
        _put_expiring(txn, f"b/{blake3.hex()}", {"sha256": sha}, expires_ms)
        return sha

    def sha256_of(self, blake3: bytes) -> str | None:
        """The blob key of retained bytes with this (receipt) digest, while they are kept."""
        return blob_for_digest(self._store, blake3)

    def gc(self, now: float | None = None) -> int:
        """Remove expired rows and blobs; enforce the byte budget. Returns blobs removed."""
        now = time.time() if now is None else now
        removed = 0
        try:
            self._counters["retention_rows_expired"] += self._drop_rows(int(now * 1000) + 1)
            removed = self.blobs.gc(now)
            if self._max_bytes:
                evicted = self.blobs.evict_to(self._max_bytes)
                self._counters["retention_evicted"] += evicted
                removed += evicted
                oldest = self.blobs.oldest_expiry()
                if evicted and oldest is not None:
                    # rows expire with their blobs; those written before the oldest blob still
                    # kept point at evicted bytes
                    dropped = self._drop_rows(int(oldest * 1000))
                    self._counters["retention_rows_evicted"] += dropped
        except StoreError as exc:
            self._counters["retention_gc_failed"] += 1
            log.warning("retention GC failed: %s", exc)
        self._counters["retention_blobs_expired"] += removed
        return removed

    def _drop_rows(self, before_ms: int) -> int:
        """Delete the rows (units and digest map) expiring before `before_ms`."""
        with self._store.write() as txn:
            expired = [k for k, _ in txn.range(TABLE, "x/", _expiry_key(before_ms, ""))]
            for key in expired:
                txn.delete(TABLE, key)
                txn.delete(TABLE, key.split(b"/", 2)[2])
        return len(expired)

    def lookup(
        self, window: int, batch: int, stage: int, direction: str, route: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """The rows of a unit, by route (all routes when `route` is None)."""
        prefix = unit_key(self._run, window, batch, stage, direction, route or "")
        with self._store.read() as txn:
            return {
                k.decode().rsplit("/", 1)[1]: v
                for k, v in txn.scan(TABLE, prefix)
                if route is None or k.decode() == prefix
            }


def blob_for_digest(store: Store, blake3: bytes) -> str | None:
    """The sha256 blob key of bytes a miner retained under this blake3 (receipt) digest."""
    with store.read() as txn:
        row = txn.get(TABLE, f"b/{blake3.hex()}")
    sha = row.get("sha256") if isinstance(row, dict) else None
    return sha if isinstance(sha, str) else None


def _expiry_key(expires_ms: int, key: str) -> str:
    return f"x/{expires_ms:016d}/{key}"


def _put_expiring(txn: WriteTxn, key: str, row: dict[str, Any], expires_ms: int) -> None:
    """Store `row` at `key` with an expiry entry, moving an earlier entry of the same key."""
    old = txn.get(TABLE, key)
    if isinstance(old, dict) and isinstance(old.get("expires_ms"), int):
        txn.delete(TABLE, _expiry_key(old["expires_ms"], key))
    txn.put(TABLE, key, {**row, "expires_ms": expires_ms})
    txn.put(TABLE, _expiry_key(expires_ms, key), None)
