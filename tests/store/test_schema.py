"""Schema stamping, step-by-step migrations and refusal of newer stores."""

from pathlib import Path

import pytest

from store import SCHEMA_VERSION, BlobStore, Migration, SchemaError, Store, StoreConfig, WriteTxn

CONFIG = StoreConfig(sync=False)


def _append(step: int) -> Migration:
    def migrate(txn: WriteTxn) -> None:
        log = txn.get("runs", "log") or []
        txn.put("runs", "log", [*log, step])
        # Each step sees the stamp of the previous one, proving one transaction per step.
        txn.put("runs", f"seen-at-{step}", txn.get("meta", "schema_version"))

    return migrate


def test_fresh_store_is_stamped(store_path: Path) -> None:
    with Store.open(store_path, CONFIG) as store:
        assert store.schema_version == SCHEMA_VERSION == 2
        with store.read() as txn:
            assert txn.get("meta", "schema_version") == SCHEMA_VERSION


def test_reopen_at_same_version_runs_nothing(store_path: Path) -> None:
    Store.open(store_path, CONFIG).close()
    migrations = {v: _append(v) for v in range(1, SCHEMA_VERSION + 1)}
    with Store.open(store_path, CONFIG, migrations=migrations) as store, store.read() as txn:
        assert store.schema_version == SCHEMA_VERSION
        assert txn.get("runs", "log") is None


def test_older_store_is_migrated_in_order(store_path: Path) -> None:
    Store.open(store_path, CONFIG, schema_version=1).close()
    migrations = {4: _append(4), 2: _append(2), 3: _append(3)}
    with Store.open(store_path, CONFIG, migrations=migrations, schema_version=4) as store:
        assert store.schema_version == 4
        with store.read() as txn:
            assert txn.get("runs", "log") == [2, 3, 4]
            assert [txn.get("runs", f"seen-at-{v}") for v in (2, 3, 4)] == [1, 2, 3]
            assert txn.get("meta", "schema_version") == 4


def test_only_pending_steps_run(store_path: Path) -> None:
    Store.open(store_path, CONFIG, schema_version=2).close()
    migrations = {2: _append(2), 3: _append(3)}
    with (
        Store.open(store_path, CONFIG, migrations=migrations, schema_version=3) as store,
        store.read() as txn,
    ):
        assert txn.get("runs", "log") == [3]


def test_newer_store_is_refused(store_path: Path) -> None:
    Store.open(store_path, CONFIG, schema_version=SCHEMA_VERSION + 1).close()
    with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade tessera"):
        Store.open(store_path, CONFIG)
    # The failed open released the environment, so the path can be opened again.
    with Store.open(store_path, CONFIG, schema_version=SCHEMA_VERSION + 1) as store:
        assert store.schema_version == SCHEMA_VERSION + 1


def test_missing_migration_is_refused(store_path: Path) -> None:
    Store.open(store_path, CONFIG, schema_version=1).close()
    with pytest.raises(SchemaError, match="no migration to schema version 3"):
        Store.open(store_path, CONFIG, migrations={2: _append(2)}, schema_version=3)
    with Store.open(store_path, CONFIG, schema_version=1) as store, store.read() as txn:
        assert txn.get("meta", "schema_version") == 1
        assert txn.get("runs", "log") is None


def test_failed_migration_keeps_completed_steps_only(store_path: Path) -> None:
    Store.open(store_path, CONFIG, schema_version=1).close()

    def broken(txn: WriteTxn) -> None:
        txn.put("runs", "half-done", True)
        raise RuntimeError("disk on fire")

    migrations = {2: _append(2), 3: broken}
    with pytest.raises(SchemaError, match=r"version 3 failed.*disk on fire"):
        Store.open(store_path, CONFIG, migrations=migrations, schema_version=3)
    with Store.open(store_path, CONFIG, schema_version=2) as store, store.read() as txn:
        assert txn.get("meta", "schema_version") == 2
        assert txn.get("runs", "log") == [2]
        assert txn.get("runs", "half-done") is None


def test_garbage_stamp_is_refused(store_path: Path) -> None:
    with Store.open(store_path, CONFIG) as store, store.write() as txn:
        txn.put("meta", "schema_version", "one")
    with pytest.raises(SchemaError, match="'one'"):
        Store.open(store_path, CONFIG)


def test_a_version_1_store_is_upgraded_and_its_blobs_read_and_a_version_1_tessera_refuses_it(
    store_path: Path,
) -> None:
    data = bytes(range(256)) * 300
    with Store.open(store_path, CONFIG, schema_version=1) as old:
        digest = BlobStore(old).put(data)
    with Store.open(store_path, CONFIG) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert BlobStore(store).get(digest) == data
    with pytest.raises(SchemaError, match="upgrade tessera"):
        Store.open(store_path, CONFIG, schema_version=1)
