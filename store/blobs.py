"""Content-addressed blobs (sha256 hex digest -> bytes) with expiry, pinning and GC.

Layout; every change updates data and index in one write transaction:
  "blobs":      digest -> the raw bytes, for a blob of at most one chunk
                digest + b"#" + u32be(i) -> the i-th chunk of a larger blob
  "blob_index": b"m" + digest -> [size, expires_ms, pinned, chunk_bytes]
                b"x" + u64be(expires_ms) + digest -> None, for every unpinned blob
                b"t" -> total bytes of all blobs
                b"d" + digest -> chunks left of a removed blob (its keys #0 .. #left-1)
Expiry keys sort by time, so GC is a range scan from the start of b"x" up to `now`.
Large blobs are cut into chunks of exactly one LMDB page (CHUNK_PAGES): LMDB keeps a large value
in contiguous overflow pages and reuses freed pages only in runs long enough for a new value;
with records churning beside them (the orchestrator's receipts) even 16-page chunks found no
runs and the file grew about 2 MiB a minute, while a one-page chunk fits any free page. Each
blob's index entry records its chunk size, so blobs written in 16-page chunks (entries of three
fields) and blobs stored whole before chunking are still read and removed.
Methods take an optional `txn` to join a caller's write, e.g. to store a blob atomically with
the record that refers to it.
A removal deletes at most CHUNKS_PER_TXN chunks in one transaction. LMDB writes the pages a
transaction frees as one freelist value, which takes contiguous pages beyond one page's worth
(~500 page numbers); evicting a window's checkpoints in one transaction (~3,500 pages) needed a
run of 7, which the one-page churn never leaves, so the file grew 7 pages a window. A blob with
more chunks leaves a b"d" entry in the transaction that removes it from the index (it is gone
for readers at once) and `reap` deletes the rest, CHUNKS_PER_TXN at a time; a restart resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from store.env import Store
from store.errors import CorruptRecordError, UnknownTableError
from store.txn import ReadTxn, WriteTxn

BLOBS_TABLE = "blobs"
INDEX_TABLE = "blob_index"
META_PREFIX = b"m"
EXPIRY_PREFIX = b"x"
TOTAL_KEY = b"t"
CHUNK_MARK = b"#"
TOMB_PREFIX = b"d"
CHUNK_PAGES = 1
CHUNKS_PER_TXN = 256
"""Chunk deletions per write transaction: their pages plus the B-tree pages the deletions touch
stay within the ~500 page numbers of a one-page LMDB freelist value."""
LEGACY_CHUNK_PAGES = 16
"""The chunk size of blobs whose index entry has no chunk size (written before it was recorded)."""
_PAGE_HEADER = 16
"""Bytes of an LMDB overflow page run taken by its header: a value of `n * page - 16` bytes fills
exactly `n` pages."""
_MAX_MS = 2**64 - 1
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What the index knows about one blob."""

    digest: str
    size: int
    expires_ms: int
    pinned: bool
    chunk_bytes: int
    """The size of its chunks (the last may be shorter); a blob of at most one is stored whole."""

    @property
    def expires_at(self) -> float:
        """The expiry as a Unix timestamp in seconds."""
        return self.expires_ms / 1000


class BlobStore:
    """Blobs kept in a Store's "blobs" and "blob_index" tables."""

    def __init__(self, store: Store, *, retention_s: float | None = None) -> None:
        for table in (BLOBS_TABLE, INDEX_TABLE):
            if table not in store.tables:
                raise UnknownTableError(table)
        self._store = store
        self.chunk_bytes = CHUNK_PAGES * store.page_size - _PAGE_HEADER
        self._legacy_chunk_bytes = LEGACY_CHUNK_PAGES * store.page_size - _PAGE_HEADER
        default = store.config.blob_retention_s if retention_s is None else retention_s
        self._retention_s = _check_retention(default)

    def put(
        self,
        data: bytes | memoryview,
        *,
        retain_s: float | None = None,
        now: float | None = None,
        txn: WriteTxn | None = None,
    ) -> str:
        """Stores `data`, returning its digest; re-putting keeps the later of the two expiries."""
        view = memoryview(data)
        digest = hashlib.sha256(view).hexdigest()
        retain = self._retention_s if retain_s is None else _check_retention(retain_s)
        expires_ms = _to_ms(_now(now) + retain)
        with self._writing(txn) as w:
            info = self._info(w, digest)
            if info is None:
                w.delete(INDEX_TABLE, _tomb_key(digest))  # same digest, same chunks: rewritten
                self._put_data(w, digest, view)
                new = BlobInfo(digest, view.nbytes, expires_ms, False, self.chunk_bytes)
                _write_info(w, new)
                w.put(INDEX_TABLE, _expiry_key(expires_ms, digest), None)
                _add_total(w, view.nbytes)
            elif expires_ms > info.expires_ms:
                if not info.pinned:
                    w.delete(INDEX_TABLE, _expiry_key(info.expires_ms, digest))
                    w.put(INDEX_TABLE, _expiry_key(expires_ms, digest), None)
                _write_info(w, replace(info, expires_ms=expires_ms))
        return digest

    def get(self, digest: str, *, txn: ReadTxn | None = None) -> bytes | None:
        """The blob's bytes, or None if absent."""
        with self._reading(txn) as r:
            whole = r.get_raw(BLOBS_TABLE, _check_digest(digest))
            if whole is not None:
                return whole
            info = self._info(r, digest)
            if info is None:
                return None
            parts = [r.get_raw(BLOBS_TABLE, key) for key in _chunk_keys(info)]
            if any(part is None for part in parts):
                raise CorruptRecordError(BLOBS_TABLE, digest.encode(), "a chunk is missing")
            return b"".join(parts)  # type: ignore[arg-type]

    def has(self, digest: str, *, txn: ReadTxn | None = None) -> bool:
        """Whether the blob is stored."""
        return self.info(digest, txn=txn) is not None

    def info(self, digest: str, *, txn: ReadTxn | None = None) -> BlobInfo | None:
        """Size, expiry and pin state of the blob, or None if absent."""
        with self._reading(txn) as r:
            return self._info(r, _check_digest(digest))

    def delete(self, digest: str, *, txn: WriteTxn | None = None) -> bool:
        """Removes the blob; True if it was present. Within a caller's `txn` a large blob's
        chunks beyond CHUNKS_PER_TXN are left to `reap` (the next `gc` or eviction)."""
        with self._writing(txn) as w:
            info = self._info(w, _check_digest(digest))
            if info is None:
                return False
            _remove(w, info, CHUNKS_PER_TXN)
        if txn is None:
            self.reap()
        return True

    def pin(self, digest: str, *, txn: WriteTxn | None = None) -> bool:
        """Exempts the blob from GC; False if it is absent."""
        return self._set_pinned(digest, True, txn)

    def unpin(self, digest: str, *, txn: WriteTxn | None = None) -> bool:
        """Makes the blob collectable again at its expiry; False if it is absent."""
        return self._set_pinned(digest, False, txn)

    def gc(self, now: float | None = None, limit: int = 10_000) -> int:
        """Removes up to `limit` unpinned blobs expired at `now`; returns how many."""
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        now_ms = _to_ms(_now(now))
        stop = EXPIRY_PREFIX + _U64.pack(now_ms + 1) if now_ms < _MAX_MS else b"y"
        removed = 0
        while removed < limit:
            with self._store.write() as w:
                found = w.range(INDEX_TABLE, EXPIRY_PREFIX, stop)
                expired = list(itertools.islice(found, limit - removed))
                room = CHUNKS_PER_TXN
                for key, _ in expired:
                    if room <= 0:
                        break
                    room -= _remove(w, self._expiring(w, key), room)
                    removed += 1
            if not expired:
                break
        self.reap()
        return removed

    def evict_to(self, max_bytes: int, batch: int = 64) -> int:
        """Removes unpinned blobs, the soonest to expire (the oldest kept) first, until the blobs
        take at most `max_bytes`; returns how many. Pinned blobs are never evicted."""
        removed = 0
        while self.total_bytes() > max_bytes:
            with self._store.write() as w:
                oldest = list(itertools.islice(w.range(INDEX_TABLE, EXPIRY_PREFIX, b"y"), batch))
                total, evicted, room = _total(w), 0, CHUNKS_PER_TXN
                for key, _ in oldest:
                    if total <= max_bytes or room <= 0:
                        break
                    info = self._expiring(w, key)
                    room -= _remove(w, info, room)
                    total -= info.size
                    evicted += 1
            if not evicted:
                break  # what is left is pinned
            removed += evicted
        self.reap()
        return removed

    def reap(self) -> int:
        """Deletes the chunks removed blobs left behind, CHUNKS_PER_TXN a transaction; returns
        how many."""
        deleted = 0
        with self._store.read() as r:
            if next(r.scan(INDEX_TABLE, TOMB_PREFIX), None) is None:
                return 0
        while True:
            with self._store.write() as w:
                room = CHUNKS_PER_TXN
                for key, left in list(itertools.islice(w.scan(INDEX_TABLE, TOMB_PREFIX), room)):
                    if room <= 0:
                        break
                    digest = key[len(TOMB_PREFIX) :].decode("ascii", "replace")
                    room -= _delete_chunks(w, digest, _tomb_left(key, left), room)
            deleted += CHUNKS_PER_TXN - room
            if room > 0:
                return deleted

    def oldest_expiry(self) -> float | None:
        """The soonest expiry (Unix seconds) among unpinned blobs; None when there are none."""
        with self._store.read() as r:
            for key, _ in r.range(INDEX_TABLE, EXPIRY_PREFIX, b"y"):
                return int(_U64.unpack(key[1 : 1 + _U64.size])[0]) / 1000
        return None

    def total_bytes(self) -> int:
        """The summed size of all stored blobs."""
        with self._store.read() as r:
            return _total(r)

    def count(self) -> int:
        """The number of stored blobs."""
        with self._store.read() as r:
            return sum(1 for _ in r.scan(INDEX_TABLE, META_PREFIX))

    def _put_data(self, txn: WriteTxn, digest: str, view: memoryview) -> None:
        if view.nbytes <= self.chunk_bytes:
            txn.put_raw(BLOBS_TABLE, digest, view)
            return
        flat = view.cast("B") if view.ndim != 1 or view.format != "B" else view
        step = self.chunk_bytes
        for i in range(-(-view.nbytes // step)):
            txn.put_raw(BLOBS_TABLE, _chunk_key(digest, i), flat[i * step : (i + 1) * step])

    def _info(self, txn: ReadTxn, digest: str) -> BlobInfo | None:
        return _read_info(txn, digest, self._legacy_chunk_bytes)

    def _expiring(self, txn: ReadTxn, expiry_key: bytes) -> BlobInfo:
        info = self._info(txn, expiry_key[1 + _U64.size :].decode("ascii", "replace"))
        if info is None:
            raise CorruptRecordError(INDEX_TABLE, expiry_key, "expiry entry of a missing blob")
        return info

    def _set_pinned(self, digest: str, pinned: bool, txn: WriteTxn | None) -> bool:
        with self._writing(txn) as w:
            info = self._info(w, _check_digest(digest))
            if info is None:
                return False
            if info.pinned != pinned:
                expiry_key = _expiry_key(info.expires_ms, info.digest)
                if pinned:
                    w.delete(INDEX_TABLE, expiry_key)
                else:
                    w.put(INDEX_TABLE, expiry_key, None)
                _write_info(w, replace(info, pinned=pinned))
            return True

    @contextmanager
    def _writing(self, txn: WriteTxn | None) -> Iterator[WriteTxn]:
        if txn is not None:
            yield txn
            return
        with self._store.write() as own:
            yield own

    @contextmanager
    def _reading(self, txn: ReadTxn | None) -> Iterator[ReadTxn]:
        if txn is not None:
            yield txn
            return
        with self._store.read() as own:
            yield own


def _remove(txn: WriteTxn, info: BlobInfo, room: int) -> int:
    """Removes the blob from the index and deletes up to `room` of its chunks (at least one),
    leaving a tombstone for the rest; returns the values deleted (its chunks, or 1 whole)."""
    txn.delete(BLOBS_TABLE, info.digest)  # whole: small, or written before chunking
    txn.delete(INDEX_TABLE, _meta_key(info.digest))
    if not info.pinned:
        txn.delete(INDEX_TABLE, _expiry_key(info.expires_ms, info.digest))
    _add_total(txn, -info.size)
    return max(1, _delete_chunks(txn, info.digest, len(_chunk_keys(info)), max(room, 1)))


def _delete_chunks(txn: WriteTxn, digest: str, left: int, room: int) -> int:
    """Deletes the last `room` of chunks #0 .. #left-1 and records how many are left."""
    done = min(left, room)
    for i in range(left - done, left):
        txn.delete(BLOBS_TABLE, _chunk_key(digest, i))
    if left > done:
        txn.put(INDEX_TABLE, _tomb_key(digest), left - done)
    else:
        txn.delete(INDEX_TABLE, _tomb_key(digest))
    return done


def _tomb_left(key: bytes, left: object) -> int:
    if not isinstance(left, int) or left < 0:
        raise CorruptRecordError(INDEX_TABLE, key, f"not a chunk count: {left!r}")
    return left


def _read_info(txn: ReadTxn, digest: str, legacy_chunk_bytes: int) -> BlobInfo | None:
    key = _meta_key(digest)
    meta = txn.get(INDEX_TABLE, key)
    if meta is None:
        return None
    match meta:
        case [int(size), int(expires_ms), bool(pinned), int(chunk)] if chunk > 0:
            return BlobInfo(digest, size, expires_ms, pinned, chunk)
        case [int(size), int(expires_ms), bool(pinned)]:
            return BlobInfo(digest, size, expires_ms, pinned, legacy_chunk_bytes)
    raise CorruptRecordError(INDEX_TABLE, key, f"not a blob index entry: {meta!r}")


def _write_info(txn: WriteTxn, info: BlobInfo) -> None:
    meta = [info.size, info.expires_ms, info.pinned, info.chunk_bytes]
    txn.put(INDEX_TABLE, _meta_key(info.digest), meta)


def _chunk_key(digest: str, i: int) -> bytes:
    return digest.encode("ascii") + CHUNK_MARK + _U32.pack(i)


def _chunk_keys(info: BlobInfo) -> list[bytes]:
    """The keys of a chunked blob's chunks; none for a blob stored whole."""
    if info.size <= info.chunk_bytes:
        return []
    return [_chunk_key(info.digest, i) for i in range(-(-info.size // info.chunk_bytes))]


def _total(txn: ReadTxn) -> int:
    total = txn.get(INDEX_TABLE, TOTAL_KEY)
    if total is None:
        return 0
    if not isinstance(total, int):
        raise CorruptRecordError(INDEX_TABLE, TOTAL_KEY, f"not a byte count: {total!r}")
    return total


def _add_total(txn: WriteTxn, delta: int) -> None:
    txn.put(INDEX_TABLE, TOTAL_KEY, _total(txn) + delta)


def _meta_key(digest: str) -> bytes:
    return META_PREFIX + digest.encode("ascii")


def _tomb_key(digest: str) -> bytes:
    return TOMB_PREFIX + digest.encode("ascii")


def _expiry_key(expires_ms: int, digest: str) -> bytes:
    return EXPIRY_PREFIX + _U64.pack(expires_ms) + digest.encode("ascii")


def _check_digest(digest: str) -> str:
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ValueError(f"not a lowercase sha256 hex digest: {digest!r}")
    return digest


def _check_retention(retain_s: float) -> float:
    if math.isnan(retain_s) or retain_s < 0:
        raise ValueError(f"retention must be a non-negative number of seconds, got {retain_s}")
    return retain_s


def _now(now: float | None) -> float:
    if now is None:
        return time.time()
    if not math.isfinite(now) or now < 0:
        raise ValueError(f"now must be a non-negative finite timestamp, got {now}")
    return now


def _to_ms(seconds: float) -> int:
    millis = seconds * 1000
    return _MAX_MS if millis >= _MAX_MS else math.floor(millis)
