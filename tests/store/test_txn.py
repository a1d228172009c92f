"""Transactions: commit, abort, snapshot isolation, scans, errors and store lifecycle."""

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import (
    DEFAULT_TABLES,
    SCHEMA_VERSION,
    CorruptRecordError,
    Store,
    StoreClosedError,
    StoreConfig,
    StoreError,
    UnknownTableError,
)


def test_commit_is_visible(store: Store) -> None:
    with store.write() as txn:
        txn.put("peers", "p1", {"addr": "/ip4/1.2.3.4", "score": 0.5})
        txn.put("peers", b"p2", [1, b"\x00"])
    with store.read() as txn:
        assert txn.get("peers", "p1") == {"addr": "/ip4/1.2.3.4", "score": 0.5}
        assert txn.get("peers", "p2") == [1, b"\x00"]
        assert txn.get("peers", "p3") is None
        assert txn.count("peers") == 2


def test_exception_aborts_everything(store: Store) -> None:
    with store.write() as txn:
        txn.put("runs", "r", "before")
    with pytest.raises(RuntimeError), store.write() as txn:
        txn.put("runs", "r", "after")
        txn.put("runs", "new", 1)
        txn.delete("runs", "r")
        raise RuntimeError("boom")
    with store.read() as txn:
        assert txn.get("runs", "r") == "before"
        assert txn.get("runs", "new") is None


def test_unencodable_value_aborts(store: Store) -> None:
    with pytest.raises(TypeError), store.write() as txn:
        txn.put("runs", "a", 1)
        txn.put("runs", "b", object())
    with store.read() as txn:
        assert txn.count("runs") == 0


def test_read_snapshot_isolation(store: Store) -> None:
    with store.write() as txn:
        txn.put("scores", "s", 1)
    with store.read() as old:
        assert old.get("scores", "s") == 1
        with store.write() as txn:
            txn.put("scores", "s", 2)
            txn.put("scores", "t", 3)
        assert old.get("scores", "s") == 1
        assert old.get("scores", "t") is None
        assert [k for k, _ in old.scan("scores")] == [b"s"]
        with store.read() as new:
            assert new.get("scores", "s") == 2


def test_write_sees_its_own_uncommitted_changes(store: Store) -> None:
    with store.write() as txn:
        txn.put("runs", "x", 1)
        assert txn.get("runs", "x") == 1
        assert txn.count("runs") == 1


def test_scan_by_prefix_in_key_order(store: Store) -> None:
    keys = ["run/b", "run/a", "run/c/1", "run", "ruo", "rum/z", "run/\xff", "zzz", "a"]
    random.Random(7).shuffle(keys)
    with store.write() as txn:
        for key in keys:
            txn.put("runs", key, key.upper())
    with store.read() as txn:
        scanned = list(txn.scan("runs", "run/"))
        everything = [k for k, _ in txn.scan("runs")]
        window = [k for k, _ in txn.range("runs", "run", "run/c")]
    expected = sorted(k.encode() for k in keys if k.startswith("run/"))
    assert [k for k, _ in scanned] == expected
    assert all(v == k.decode().upper() for k, v in scanned)
    assert everything == sorted(k.encode() for k in keys)
    assert window == [b"run", b"run/a", b"run/b"]


def test_scan_with_no_match_is_empty(store: Store) -> None:
    with store.write() as txn:
        txn.put("runs", "a", 1)
    with store.read() as txn:
        assert list(txn.scan("runs", "b")) == []
        assert list(txn.scan("peers")) == []


def test_delete(store: Store) -> None:
    with store.write() as txn:
        txn.put("routes", "r1", 1)
        txn.put("routes", "r2", 2)
    with store.write() as txn:
        assert txn.delete("routes", "r1") is True
        assert txn.delete("routes", "r1") is False
        assert txn.delete("routes", "missing") is False
    with store.read() as txn:
        assert txn.get("routes", "r1") is None
        assert [k for k, _ in txn.scan("routes")] == [b"r2"]


def test_unknown_table(store: Store) -> None:
    with store.read() as txn:
        with pytest.raises(UnknownTableError, match="nope"):
            txn.get("nope", "k")
        with pytest.raises(UnknownTableError):
            list(txn.scan("nope"))
        with pytest.raises(UnknownTableError):
            txn.count("nope")
    with store.write() as txn, pytest.raises(UnknownTableError):
        txn.put("nope", "k", 1)


def test_corrupt_record_names_table_and_key(store: Store) -> None:
    with store.write() as txn:
        txn.put("audits", "good", 1)
        txn.put_raw("audits", "bad", b"\xc1\xc1garbage")
    with store.read() as txn:
        assert txn.get("audits", "good") == 1
        assert txn.get_raw("audits", "bad") == b"\xc1\xc1garbage"
        with pytest.raises(CorruptRecordError, match=r"'audits'.*b'bad'") as info:
            txn.get("audits", "bad")
        with pytest.raises(CorruptRecordError):
            list(txn.scan("audits"))
    assert (info.value.table, info.value.key) == ("audits", b"bad")


def test_transaction_unusable_after_its_block(store: Store) -> None:
    with store.write() as txn:
        txn.put("runs", "a", 1)
    with pytest.raises(StoreClosedError):
        txn.get("runs", "a")
    with store.read() as reader:
        rows = reader.scan("runs")
    with pytest.raises(StoreClosedError):
        next(rows)


def test_nested_write_in_same_thread_is_refused(store: Store) -> None:
    with store.write() as txn:
        txn.put("runs", "a", 1)
        with pytest.raises(StoreError, match="already open"), store.write():
            pass
    with store.read() as txn:
        assert txn.get("runs", "a") == 1


def test_closed_store(store_path: Path) -> None:
    store = Store.open(store_path, StoreConfig(sync=False))
    with store.read() as reader:
        store.close()
        with pytest.raises(StoreClosedError):
            reader.get("runs", "a")
    store.close()
    assert store.closed
    with pytest.raises(StoreClosedError):
        store.read().__enter__()
    with pytest.raises(StoreClosedError):
        store.write().__enter__()


def test_close_inside_write_does_not_pretend_to_commit(store_path: Path) -> None:
    store = Store.open(store_path, StoreConfig(sync=False))
    with pytest.raises(StoreClosedError), store.write() as txn:
        txn.put("runs", "a", 1)
        store.close()
    with Store.open(store_path, StoreConfig(sync=False)) as again, again.read() as txn:
        assert txn.get("runs", "a") is None


def test_data_persists_across_reopen(store_path: Path) -> None:
    with Store.open(store_path, StoreConfig(sync=True)) as store, store.write() as txn:
        txn.put("chain", "block", 123)
    with Store.open(store_path, StoreConfig(sync=True)) as store, store.read() as txn:
        assert txn.get("chain", "block") == 123


def test_second_open_of_same_path_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="already open"):
        Store.open(store.path, StoreConfig(sync=False))


def test_extra_tables_and_meta_always_present(store_path: Path) -> None:
    with Store.open(store_path, StoreConfig(sync=False), tables=["jobs", "jobs"]) as store:
        assert store.tables == ("meta", "jobs")
        with store.write() as txn:
            txn.put("jobs", "j", 1)
            with pytest.raises(UnknownTableError):
                txn.put("runs", "r", 1)


@pytest.mark.parametrize("bad", ["", "x" * 256])
def test_invalid_table_names(store_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="table names"):
        Store.open(store_path, StoreConfig(sync=False), tables=[bad])


def test_stats(store: Store) -> None:
    with store.write() as txn:
        for i in range(10):
            txn.put("events", f"e{i}", "x" * 100)
    stats = store.stats()
    assert stats["path"] == str(store.path)
    assert stats["map_size"] == 1024 * 1024 * 1024
    assert stats["page_size"] > 0
    assert stats["page_size"] * 2 < stats["used"] < stats["map_size"]
    assert stats["schema_version"] == store.schema_version == SCHEMA_VERSION
    assert stats["entries"]["events"] == 10
    assert set(stats["entries"]) == set(DEFAULT_TABLES)
    assert 0 < stats["data"] <= stats["used"]


def test_data_pages_fall_when_records_go_and_the_high_water_stays(store: Store) -> None:
    with store.write() as txn:
        for i in range(2000):
            txn.put("events", f"e{i:05d}", "x" * 1000)
    full = store.stats()
    with store.write() as txn:
        for i in range(2000):
            txn.delete("events", f"e{i:05d}")
    emptied = store.stats()
    assert full["data"] > 2000 * 1000 > emptied["data"] * 100
    assert emptied["used"] >= full["used"] > emptied["data"]  # the high-water never falls


_ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete"]),
        st.binary(min_size=1, max_size=4),
        st.integers(-(2**63), 2**63),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_ops, st.booleans()), max_size=8))
def test_matches_dict_model(batches: list[tuple[list[tuple[str, bytes, int]], bool]]) -> None:
    model: dict[bytes, int] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        Store.open(Path(tmp), StoreConfig(sync=False)) as store,
    ):
        for ops, abort in batches:
            staged = dict(model)
            with pytest.raises(KeyboardInterrupt) if abort else _nothing(), store.write() as txn:
                for op, key, value in ops:
                    if op == "put":
                        txn.put("runs", key, value)
                        staged[key] = value
                    else:
                        assert txn.delete("runs", key) == (key in staged)
                        staged.pop(key, None)
                if abort:
                    raise KeyboardInterrupt
            if not abort:
                model = staged
            with store.read() as txn:
                assert list(txn.scan("runs")) == sorted(model.items())
                assert txn.count("runs") == len(model)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
