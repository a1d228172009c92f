"""Large blobs in fixed-size chunks: roundtrip, removal, blobs stored whole before chunking, and
a store whose blobs churn within their budget keeping its high-water mark bounded."""

import random
from pathlib import Path

from store import BlobStore, Store, StoreConfig
from store.blobs import BLOBS_TABLE, INDEX_TABLE, META_PREFIX


def _rows(store: Store) -> int:
    with store.read() as txn:
        return txn.count(BLOBS_TABLE)


def test_large_blob_roundtrips_in_chunks_and_leaves_nothing_when_deleted(
    store: Store, blobs: BlobStore
) -> None:
    assert blobs.chunk_bytes == store.page_size - 16  # one overflow page
    data = random.Random(1).randbytes(5 * blobs.chunk_bytes + 123)
    small = blobs.put(b"small")
    digest = blobs.put(data)
    assert blobs.get(digest) == data
    assert _rows(store) == 1 + 6, "six chunks and the small blob"
    assert blobs.count() == 2
    assert blobs.total_bytes() == len(data) + 5
    assert blobs.delete(digest)
    assert blobs.get(digest) is None
    assert _rows(store) == 1 and blobs.get(small) == b"small"


def test_exact_multiple_of_a_chunk_and_eviction_remove_every_chunk(
    store: Store, blobs: BlobStore
) -> None:
    data = bytes(range(256)) * (3 * blobs.chunk_bytes // 256) + bytes(3 * blobs.chunk_bytes % 256)
    assert len(data) == 3 * blobs.chunk_bytes
    digest = blobs.put(data)
    assert _rows(store) == 3 and blobs.get(digest) == data
    assert blobs.evict_to(0) == 1
    assert _rows(store) == 0 and blobs.total_bytes() == 0


def test_a_large_blob_stored_whole_before_chunking_is_read_and_removed(store: Store) -> None:
    before = BlobStore(store)
    before.chunk_bytes = 1 << 40  # the layout of stores written before chunking
    data = random.Random(2).randbytes(400_000)
    digest = before.put(data)
    assert _rows(store) == 1
    now = BlobStore(store)
    assert now.get(digest) == data
    assert now.delete(digest) and _rows(store) == 0


def test_blobs_in_16_page_chunks_from_before_the_chunk_size_was_recorded_still_work(
    store: Store,
) -> None:
    legacy = 16 * store.page_size - 16
    before = BlobStore(store)
    before.chunk_bytes = legacy
    data = random.Random(3).randbytes(3 * legacy + 10)
    digest = before.put(data, retain_s=60, now=1000.0)
    with store.write() as txn:  # the index entry as such stores wrote it: three fields
        txn.put(INDEX_TABLE, META_PREFIX + digest.encode(), [len(data), 1_060_000, False])
    assert _rows(store) == 4
    now = BlobStore(store)
    assert now.chunk_bytes < legacy
    info = now.info(digest)
    assert info is not None and info.chunk_bytes == legacy
    assert now.get(digest) == data
    now.put(data, retain_s=600, now=1000.0)  # a later expiry keeps the chunks as they are
    assert now.pin(digest) and now.unpin(digest)
    info = now.info(digest)
    assert info is not None and (info.chunk_bytes, info.expires_ms) == (legacy, 1_600_000)
    assert now.get(digest) == data and _rows(store) == 4
    assert now.delete(digest) and _rows(store) == 0
    fresh = now.put(data)
    assert _rows(store) == -(-len(data) // now.chunk_bytes) and now.get(fresh) == data


def _high_water_after_churn(path: Path, chunk_bytes: int | None) -> float:
    """Puts 1,200 blobs of mixed sizes, evicting to the budget after each; returns the store's
    high-water mark as a multiple of the blob budget."""
    with Store.open(path, StoreConfig(map_size_mib=32, sync=False)) as store:
        blobs = BlobStore(store)
        if chunk_bytes is not None:
            blobs.chunk_bytes = chunk_bytes
        rnd = random.Random(0)
        budget = store.config.blob_budget_bytes
        for _ in range(1200):
            size = rnd.choice([20_000, 300_000, 700_000, 1_500_000]) + rnd.randrange(4096)
            blobs.put(rnd.randbytes(size))
            blobs.evict_to(budget)
            assert blobs.total_bytes() <= budget
        return store.stats()["used"] / budget


def test_chunks_keep_the_high_water_mark_near_the_blob_budget(tmp_path: Path) -> None:
    chunked = _high_water_after_churn(tmp_path / "chunked", None)
    whole = _high_water_after_churn(tmp_path / "whole", 1 << 40)
    assert chunked < 1.35, chunked
    assert whole > chunked + 0.15, (whole, chunked)  # what chunking is for
