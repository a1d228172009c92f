"""LMDB-backed state of one node home: tables, transactions, schema and content-addressed blobs."""

from store.blobs import BlobInfo, BlobStore
from store.codec import Key
from store.config import StoreConfig
from store.env import DEFAULT_TABLES, Store, StoreStats
from store.errors import (
    CorruptRecordError,
    MapFullError,
    SchemaError,
    StoreClosedError,
    StoreError,
    UnknownTableError,
)
from store.schema import SCHEMA_VERSION, Migration
from store.txn import ReadTxn, WriteTxn

__all__ = [
    "DEFAULT_TABLES",
    "SCHEMA_VERSION",
    "BlobInfo",
    "BlobStore",
    "CorruptRecordError",
    "Key",
    "MapFullError",
    "Migration",
    "ReadTxn",
    "SchemaError",
    "Store",
    "StoreClosedError",
    "StoreConfig",
    "StoreError",
    "StoreStats",
    "UnknownTableError",
    "WriteTxn",
]
