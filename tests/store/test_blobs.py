"""Content-addressed blobs: roundtrip, idempotence, expiry GC, pinning and index consistency."""

import hashlib
from pathlib import Path

import pytest

from store import BlobStore, Store, StoreConfig, UnknownTableError
from store.blobs import EXPIRY_PREFIX, INDEX_TABLE, META_PREFIX


def _index_keys(store: Store, prefix: bytes) -> list[bytes]:
    with store.read() as txn:
        return [key for key, _ in txn.scan(INDEX_TABLE, prefix)]


def test_roundtrip_and_digest(blobs: BlobStore) -> None:
    data = b"shard-0 weights" * 100
    digest = blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert blobs.get(digest) == data
    assert blobs.has(digest)
    other = hashlib.sha256(b"never stored").hexdigest()
    assert blobs.get(other) is None
    assert not blobs.has(other)


def test_memoryview_and_empty(blobs: BlobStore) -> None:
    digest = blobs.put(memoryview(bytearray(b"abc")))
    assert blobs.get(digest) == b"abc"
    empty = blobs.put(b"")
    assert blobs.get(empty) == b""
    assert blobs.count() == 2


def test_put_is_idempotent_and_keeps_later_expiry(store: Store, blobs: BlobStore) -> None:
    digest = blobs.put(b"x" * 10, now=1000.0, retain_s=100.0)
    assert blobs.put(b"x" * 10, now=1000.0, retain_s=500.0) == digest
    blobs.put(b"x" * 10, now=1000.0, retain_s=50.0)
    info = blobs.info(digest)
    assert info is not None and info.expires_at == 1500.0
    assert blobs.count() == 1
    assert blobs.total_bytes() == 10
    assert len(_index_keys(store, EXPIRY_PREFIX)) == 1
    assert blobs.gc(now=1499.0) == 0
    assert blobs.gc(now=1500.0) == 1


def test_default_retention_comes_from_config(store_path: Path) -> None:
    config = StoreConfig(sync=False, blob_retention_s=50.0)
    with Store.open(store_path, config) as store:
        blobs = BlobStore(store)
        info = blobs.info(blobs.put(b"a", now=1000.0))
        assert info is not None and info.expires_at == 1050.0
        override = BlobStore(store, retention_s=7.0)
        info = override.info(override.put(b"b", now=1000.0))
        assert info is not None and info.expires_at == 1007.0


def test_gc_removes_only_expired(store: Store, blobs: BlobStore) -> None:
    a = blobs.put(b"a" * 1, now=1000.0, retain_s=10.0)
    b = blobs.put(b"b" * 2, now=1000.0, retain_s=20.0)
    c = blobs.put(b"c" * 4, now=1000.0, retain_s=30.001)
    assert blobs.total_bytes() == 7
    assert blobs.gc(now=1009.999) == 0
    assert blobs.gc(now=1015.0) == 1
    assert (blobs.has(a), blobs.has(b), blobs.has(c)) == (False, True, True)
    assert blobs.gc(now=1020.0) == 1
    assert (blobs.has(b), blobs.has(c)) == (False, True)
    assert blobs.total_bytes() == 4
    assert blobs.gc(now=1030.0) == 0
    assert blobs.gc(now=1030.001) == 1
    assert blobs.count() == 0
    assert blobs.total_bytes() == 0
    assert _index_keys(store, META_PREFIX) == _index_keys(store, EXPIRY_PREFIX) == []


def test_gc_respects_limit(blobs: BlobStore) -> None:
    for i in range(5):
        blobs.put(bytes([i]), now=float(i), retain_s=1.0)
    assert [blobs.gc(now=100.0, limit=2) for _ in range(4)] == [2, 2, 1, 0]
    with pytest.raises(ValueError):
        blobs.gc(limit=0)


def test_gc_collects_oldest_first(blobs: BlobStore) -> None:
    digests = [blobs.put(bytes([i]), now=float(10 - i), retain_s=1.0) for i in range(5)]
    assert blobs.gc(now=100.0, limit=2) == 2
    assert [blobs.has(d) for d in digests] == [True, True, True, False, False]


def test_evict_to_drops_the_oldest_unpinned_until_under_budget(blobs: BlobStore) -> None:
    oldest_pinned = blobs.put(b"p" * 100, now=0.0, retain_s=10.0)
    assert blobs.pin(oldest_pinned)
    digests = [blobs.put(bytes([i]) * 100, now=float(i), retain_s=10.0) for i in range(1, 6)]
    assert blobs.total_bytes() == 600
    assert blobs.evict_to(350, batch=2) == 3  # the three kept longest go, in two batches
    assert [blobs.has(d) for d in digests] == [False, False, False, True, True]
    assert blobs.total_bytes() == 300
    assert blobs.evict_to(0) == 2  # down to what is pinned, which stays
    assert blobs.has(oldest_pinned) and blobs.total_bytes() == 100
    assert blobs.evict_to(0) == 0


def test_pinned_blobs_survive_gc(store: Store, blobs: BlobStore) -> None:
    kept = blobs.put(b"checkpoint", now=0.0, retain_s=1.0)
    gone = blobs.put(b"scratch", now=0.0, retain_s=1.0)
    assert blobs.pin(kept)
    assert blobs.pin(kept)
    assert not blobs.pin(hashlib.sha256(b"absent").hexdigest())
    assert blobs.gc(now=1e9) == 1
    assert blobs.has(kept) and not blobs.has(gone)
    info = blobs.info(kept)
    assert info is not None and info.pinned
    assert _index_keys(store, EXPIRY_PREFIX) == []
    assert blobs.unpin(kept)
    assert blobs.gc(now=1e9) == 1
    assert not blobs.has(kept)


def test_delete(store: Store, blobs: BlobStore) -> None:
    digest = blobs.put(b"12345")
    pinned = blobs.put(b"678")
    blobs.pin(pinned)
    assert blobs.delete(digest)
    assert not blobs.delete(digest)
    assert blobs.delete(pinned)
    assert blobs.count() == 0
    assert blobs.total_bytes() == 0
    assert _index_keys(store, b"") == [b"t"]


def test_joins_caller_transaction_atomically(store: Store, blobs: BlobStore) -> None:
    with pytest.raises(RuntimeError), store.write() as txn:
        digest = blobs.put(b"shard", txn=txn)
        txn.put("checkpoints", "ck1", {"blob": digest})
        assert blobs.has(digest, txn=txn)
        raise RuntimeError("abort")
    assert not blobs.has(digest)
    assert blobs.total_bytes() == 0
    assert _index_keys(store, b"") == []
    with store.write() as txn:
        digest = blobs.put(b"shard", txn=txn)
        txn.put("checkpoints", "ck1", {"blob": digest})
    with store.read() as txn:
        assert txn.get("checkpoints", "ck1") == {"blob": digest}
        assert blobs.get(digest, txn=txn) == b"shard"


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "0" * 63 + "!"])
def test_rejects_malformed_digests(blobs: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        blobs.get(bad)


@pytest.mark.parametrize("retain", [-1.0, float("nan")])
def test_rejects_bad_retention(blobs: BlobStore, retain: float) -> None:
    with pytest.raises(ValueError, match="retention"):
        blobs.put(b"x", retain_s=retain)


def test_infinite_retention_never_expires(blobs: BlobStore) -> None:
    digest = blobs.put(b"forever", retain_s=float("inf"))
    assert blobs.gc(now=1e15) == 0
    assert blobs.has(digest)


def test_needs_blob_tables(store_path: Path) -> None:
    config = StoreConfig(sync=False)
    with Store.open(store_path, config, tables=["runs"]) as store, pytest.raises(UnknownTableError):
        BlobStore(store)
