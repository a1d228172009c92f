"""Removing large blobs in bounded transactions: no write deletes more than CHUNKS_PER_TXN
chunks, a removed blob is gone for readers at once, its leftover chunks are reaped (after a
restart too), and putting the same bytes again while chunks wait to be reaped keeps them."""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from store import BlobStore, Store, StoreConfig
from store.blobs import BLOBS_TABLE, CHUNKS_PER_TXN, INDEX_TABLE, TOMB_PREFIX
from store.txn import WriteTxn


def _rows(store: Store) -> int:
    with store.read() as txn:
        return txn.count(BLOBS_TABLE)


def _tombs(store: Store) -> int:
    with store.read() as txn:
        return sum(1 for _ in txn.scan(INDEX_TABLE, TOMB_PREFIX))


@pytest.fixture
def deletions(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Blob rows removed by each write transaction the store commits from now on."""
    removed: list[int] = []
    write = store.write

    @contextmanager
    def counted() -> Iterator[WriteTxn]:
        before = _rows(store)
        with write() as txn:
            yield txn
        removed.append(before - _rows(store))

    monkeypatch.setattr(store, "write", counted)
    return removed


def _big(blobs: BlobStore, chunks: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(chunks * blobs.chunk_bytes - 7)


def test_eviction_deletes_at_most_chunks_per_txn_in_each_write(
    store: Store, blobs: BlobStore, deletions: list[int]
) -> None:
    sizes = (3 * CHUNKS_PER_TXN + 5, 40, 40, 2 * CHUNKS_PER_TXN)
    digests = [blobs.put(_big(blobs, n, i)) for i, n in enumerate(sizes)]
    deletions.clear()
    assert blobs.evict_to(0) == len(digests)
    assert _rows(store) == 0 and _tombs(store) == 0 and blobs.total_bytes() == 0
    assert max(deletions) <= CHUNKS_PER_TXN, deletions
    assert sum(deletions) == sum(sizes)
    assert len(deletions) >= sum(sizes) // CHUNKS_PER_TXN  # it took several transactions
    deletions.clear()
    assert blobs.reap() == 0 and deletions == [], "nothing to reap takes no write"


def test_gc_of_expired_blobs_is_bounded_the_same_way(
    store: Store, blobs: BlobStore, deletions: list[int]
) -> None:
    old = [
        blobs.put(_big(blobs, CHUNKS_PER_TXN // 2 + 1, i), retain_s=1, now=100) for i in range(5)
    ]
    kept = blobs.put(b"kept", retain_s=1000, now=100)
    deletions.clear()
    assert blobs.gc(now=200) == len(old)
    assert max(deletions) <= CHUNKS_PER_TXN, deletions
    assert _rows(store) == 1 and blobs.get(kept) == b"kept" and _tombs(store) == 0


def test_a_removed_blob_is_gone_at_once_and_its_chunks_are_reaped_after_a_restart(
    store_path: Path,
) -> None:
    config = StoreConfig(sync=False)
    with Store.open(store_path, config) as store:
        blobs = BlobStore(store)
        data = _big(blobs, 2 * CHUNKS_PER_TXN + 3, 7)
        digest = blobs.put(data)
        with store.write() as txn:  # within a caller's transaction the rest waits for reap
            assert blobs.delete(digest, txn=txn)
        assert blobs.get(digest) is None and not blobs.has(digest) and blobs.count() == 0
        assert blobs.total_bytes() == 0
        assert _rows(store) == CHUNKS_PER_TXN + 3 and _tombs(store) == 1
    with Store.open(store_path, config) as store:
        blobs = BlobStore(store)
        assert blobs.reap() == CHUNKS_PER_TXN + 3
        assert _rows(store) == 0 and _tombs(store) == 0
        assert blobs.reap() == 0


def test_putting_the_same_bytes_before_the_reap_keeps_every_chunk(
    store: Store, blobs: BlobStore
) -> None:
    data = _big(blobs, CHUNKS_PER_TXN + 50, 9)
    digest = blobs.put(data)
    with store.write() as txn:
        blobs.delete(digest, txn=txn)
    assert _tombs(store) == 1
    assert blobs.put(data) == digest
    assert _tombs(store) == 0
    assert blobs.reap() == 0
    assert blobs.get(digest) == data and blobs.total_bytes() == len(data)
