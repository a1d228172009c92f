"""A full LMDB map: MapFullError, reads survive, room returns after deletes or a bigger map."""

from pathlib import Path

import pytest

from store import MapFullError, Store, StoreConfig

# Large enough that a commit cannot fit into the pages freed by the one before it.
RECORD = b"r" * 10_000


def _fill(store: Store) -> int:
    """Writes one record per transaction until the map is full; returns how many committed."""
    for i in range(10_000):
        try:
            with store.write() as txn:
                txn.put("meta", "last-attempt", i)
                txn.put_raw("events", f"{i:06d}", RECORD)
        except MapFullError as exc:
            assert "store.map_size_mib" in str(exc)
            assert "1048576 bytes" in str(exc)
            assert exc.map_size == 1024 * 1024
            return i
    raise AssertionError("a 1 MiB map never filled up")


def _assert_intact(store: Store, count: int) -> None:
    with store.read() as txn:
        assert txn.count("events") == count
        assert all(txn.get_raw("events", f"{i:06d}") == RECORD for i in range(count))
        # The failed transaction's other write was rolled back with it.
        assert txn.get("meta", "last-attempt") == count - 1


def test_full_map_raises_and_reads_survive(store_path: Path) -> None:
    with Store.open(store_path, StoreConfig(map_size_mib=1, sync=False)) as store:
        written = _fill(store)
        assert written > 10
        _assert_intact(store, written)
        with pytest.raises(MapFullError):
            _fill_once(store, written)
        _assert_intact(store, written)


def test_writes_succeed_again_after_deletes(store_path: Path) -> None:
    with Store.open(store_path, StoreConfig(map_size_mib=1, sync=False)) as store:
        written = _fill(store)
        with store.write() as txn:
            for i in range(20):
                assert txn.delete("events", f"{i:06d}")
        for i in range(15):
            _fill_once(store, written + i)
        with store.read() as txn:
            assert txn.count("events") == written - 20 + 15


def test_bigger_map_after_restart(store_path: Path) -> None:
    with Store.open(store_path, StoreConfig(map_size_mib=1, sync=False)) as store:
        written = _fill(store)
    with Store.open(store_path, StoreConfig(map_size_mib=4, sync=False)) as store:
        assert store.stats()["map_size"] == 4 * 1024 * 1024
        _assert_intact(store, written)
        for i in range(50):
            _fill_once(store, written + i)
        assert store.stats()["used"] > 1024 * 1024


def _fill_once(store: Store, i: int) -> None:
    with store.write() as txn:
        txn.put_raw("events", f"{i:06d}", RECORD)
