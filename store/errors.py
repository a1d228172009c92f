"""Errors raised by the store package; LMDB and msgpack errors are mapped onto these."""


class StoreError(Exception):
    """Base class of every error raised by the store package."""


class MapFullError(StoreError):
    """The LMDB map is full; the node must free space or restart with a larger map."""

    def __init__(self, map_size: int) -> None:
        self.map_size = map_size
        mib = map_size / (1024 * 1024)
        super().__init__(
            f"the store is full (LMDB map size {map_size} bytes = {mib:g} MiB); "
            "free space (delete data, collect blobs) or raise `store.map_size_mib` "
            "in the node config and restart"
        )


class StoreClosedError(StoreError):
    """The store, or the transaction in use, has already been closed."""


class SchemaError(StoreError):
    """The store was written by a newer schema, or a migration is missing or failed."""


class CorruptRecordError(StoreError):
    """A stored value does not decode."""

    def __init__(self, table: str, key: bytes, reason: str) -> None:
        self.table = table
        self.key = key
        super().__init__(f"corrupt record in table {table!r} at key {key!r}: {reason}")


class UnknownTableError(StoreError):
    """A table name was not declared when the store was opened."""

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__(f"unknown table {table!r}; declare it in Store.open(tables=...)")
