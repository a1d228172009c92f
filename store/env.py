"""The node's LMDB environment: named tables, explicit transactions, schema check and stats.

One `Store` owns the LMDB environment in one directory (`data.mdb` and `lock.mdb`) of a node
home. Tables are LMDB named sub-databases declared at open. Work happens in explicit
transactions: `with store.read() as txn` sees a snapshot, `with store.write() as txn` commits
when the block ends and aborts if it raises. LMDB allows one writer at a time.

When the map fills, writes raise MapFullError and reads keep working. LMDB recycles the pages
a commit frees only two transactions later, so after a MapFullError the store follows the next
successful commit with a tiny extra one; deleting data then makes room for the next write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypedDict

import lmdb

from store.config import StoreConfig
from store.errors import MapFullError, StoreClosedError, StoreError
from store.schema import META_TABLE, MIGRATIONS, SCHEMA_KEY, SCHEMA_VERSION, ensure_schema
from store.txn import ReadTxn, WriteTxn

DEFAULT_TABLES: tuple[str, ...] = (
    "meta",
    "peers",
    "bindings",
    "runs",
    "routes",
    "receipts",
    "blobs",
    "blob_index",
    "checkpoints",
    "merges",
    "audits",
    "scores",
    "chain",
    "events",
    "mining",
    "history",
)


class StoreStats(TypedDict):
    """What `Store.stats` reports (shown by the node's status endpoint)."""

    path: str
    schema_version: int
    map_size: int
    used: int
    """Bytes up to the highest page ever written (the file's high-water mark)."""
    data: int
    """Bytes of the pages that hold data now; `used - data` is free pages LMDB reuses."""
    page_size: int
    readers: int
    max_readers: int
    entries: dict[str, int]


class Store:
    """One LMDB environment with named tables; create it with `Store.open`."""

    def __init__(self, env: Any, path: Path, dbs: dict[str, Any], config: StoreConfig) -> None:
        self._env: Any | None = env
        self._path = path
        self._config = config
        self._dbs = dbs
        self._schema_version = 0
        self._writers: set[int] = set()
        self._map_pressure = False
        self._page_size = int(env.stat()["psize"])

    @classmethod
    def open(
        cls,
        path: Path,
        config: StoreConfig,
        *,
        tables: Iterable[str] = DEFAULT_TABLES,
        migrations: Mapping[int, Callable[[WriteTxn], None]] | None = None,
        schema_version: int = SCHEMA_VERSION,
    ) -> Store:
        """Opens (creating if needed) the store in directory `path` and checks its schema.

        `migrations[v]` upgrades version v - 1 to v (default: the package's registry);
        `schema_version` is the version this code expects, overridable for tests.
        """
        names = _table_names(tables)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store directory {path}: {exc}") from exc
        try:
            env = lmdb.open(
                str(path),
                subdir=True,
                map_size=config.map_size_bytes,
                max_dbs=len(names),
                max_readers=config.max_readers,
                sync=config.sync,
                lock=True,
            )
        except lmdb.Error as exc:
            raise StoreError(f"cannot open store at {path}: {exc}") from exc
        try:
            env.reader_check()  # frees reader slots left by killed processes
            with env.begin(write=True) as raw:
                dbs = {name: env.open_db(name.encode(), txn=raw, create=True) for name in names}
        except lmdb.MapFullError as exc:
            env.close()
            raise MapFullError(config.map_size_bytes) from exc
        except lmdb.Error as exc:
            env.close()
            raise StoreError(f"cannot open tables of store at {path}: {exc}") from exc
        store = cls(env, path, dbs, config)
        try:
            store._schema_version = ensure_schema(
                store.write,
                target=schema_version,
                migrations=MIGRATIONS if migrations is None else migrations,
            )
        except BaseException:
            store.close()
            raise
        return store

    @property
    def path(self) -> Path:
        """The directory holding the LMDB files."""
        return self._path

    @property
    def config(self) -> StoreConfig:
        """The settings the store was opened with."""
        return self._config

    @property
    def schema_version(self) -> int:
        """The schema version the store is at (after any migrations)."""
        return self._schema_version

    @property
    def tables(self) -> tuple[str, ...]:
        """The declared table names."""
        return tuple(self._dbs)

    @property
    def page_size(self) -> int:
        """LMDB's page size in bytes (the unit of its allocations)."""
        return self._page_size

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._env is None

    @contextmanager
    def read(self) -> Iterator[ReadTxn]:
        """A read-only snapshot transaction, ended when the block exits."""
        env = self._require_open()
        try:
            raw = env.begin(write=False)
        except lmdb.Error as exc:
            raise self._translate(exc) from exc
        txn = ReadTxn(raw, self._dbs, self._translate)
        try:
            yield txn
        finally:
            self._end(txn, commit=False)

    @contextmanager
    def write(self) -> Iterator[WriteTxn]:
        """The write transaction: commits when the block exits normally, aborts if it raises."""
        env = self._require_open()
        me = threading.get_ident()
        if me in self._writers:
            raise StoreError("a write transaction is already open in this thread; reuse it")
        try:
            raw = env.begin(write=True)
        except lmdb.Error as exc:
            raise self._translate(exc) from exc
        self._writers.add(me)
        txn = WriteTxn(raw, self._dbs, self._translate)
        try:
            try:
                yield txn
            except BaseException:
                self._end(txn, commit=False)
                raise
            self._end(txn, commit=True)
        finally:
            self._writers.discard(me)
        if self._map_pressure:
            self._bump()

    def stats(self) -> StoreStats:
        """Map size, bytes up to the last page written, bytes of the pages in use, and entries
        per table."""
        env = self._require_open()
        try:
            info = env.info()
            main = env.stat()
        except lmdb.Error as exc:
            raise self._translate(exc) from exc
        page_size = int(main["psize"])
        pages = int(main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"])
        with self.read() as txn:
            entries = {name: txn.count(name) for name in self._dbs}
            pages += sum(txn.pages(name) for name in self._dbs)
        return StoreStats(
            path=str(self._path),
            schema_version=self._schema_version,
            map_size=int(info["map_size"]),
            used=(int(info["last_pgno"]) + 1) * page_size,
            data=pages * page_size,
            page_size=page_size,
            readers=int(info["num_readers"]),
            max_readers=int(info["max_readers"]),
            entries=entries,
        )

    def close(self) -> None:
        """Closes the environment; open transactions become unusable. Idempotent."""
        env, self._env = self._env, None
        if env is not None:
            env.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"schema {self._schema_version}"
        return f"<Store {self._path} ({state})>"

    def _require_open(self) -> Any:
        if self._env is None:
            raise StoreClosedError(f"the store at {self._path} is closed")
        return self._env

    def _end(self, txn: ReadTxn, *, commit: bool) -> None:
        if self._env is not None:
            txn._end(commit=commit)
            return
        txn._abandon()  # closing the environment already aborted the LMDB transaction
        if commit:
            raise StoreClosedError(f"the store at {self._path} was closed before the commit")

    def _translate(self, exc: lmdb.Error) -> StoreError:
        if self._env is None:
            return StoreClosedError(f"the store at {self._path} is closed")
        if isinstance(exc, lmdb.MapFullError):
            self._map_pressure = True
            return MapFullError(int(self._env.info()["map_size"]))
        return StoreError(f"LMDB error in store at {self._path}: {exc}")

    def _bump(self) -> None:
        # Rewriting the schema stamp is the smallest commit that advances LMDB's txn id.
        self._map_pressure = False
        env, meta = self._require_open(), self._dbs[META_TABLE]
        try:
            with env.begin(write=True, db=meta) as raw:
                stamp = raw.get(SCHEMA_KEY.encode())
                if stamp is not None:
                    raw.put(SCHEMA_KEY.encode(), stamp)
        except lmdb.MapFullError:
            self._map_pressure = True


def _table_names(tables: Iterable[str]) -> tuple[str, ...]:
    names = dict.fromkeys([META_TABLE, *tables])
    for name in names:
        if not isinstance(name, str) or not name or len(name.encode()) > 255:
            raise ValueError(f"table names are non-empty strings up to 255 bytes, got {name!r}")
    return tuple(names)
