"""Schema versioning: stamping a fresh store and migrating an older one step by step.

The version lives in table "meta" under `schema_version`. `MIGRATIONS[v]` upgrades a store from
version v - 1 to v; each step runs in its own write transaction together with the new stamp,
so an interrupted upgrade resumes at the first step that did not commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from store.errors import SchemaError
from store.txn import WriteTxn

SCHEMA_VERSION = 2
SCHEMA_KEY = "schema_version"
META_TABLE = "meta"

Migration = Callable[[WriteTxn], None]


def _blob_chunk_size_in_index(txn: WriteTxn) -> None:
    """Version 2: blob index entries may carry a fourth field, the blob's chunk size.

    Entries of three fields (blobs written in 16-page chunks) stay readable as they are, so
    nothing is rewritten; the stamp exists so that a tessera that knows only version 1 refuses
    the store with "upgrade tessera" instead of failing on an index entry it cannot parse.
    """


# Version -> the migration that produces it.
MIGRATIONS: Mapping[int, Migration] = {2: _blob_chunk_size_in_index}


def ensure_schema(
    begin_write: Callable[[], AbstractContextManager[WriteTxn]],
    *,
    target: int,
    migrations: Mapping[int, Migration],
) -> int:
    """Stamps a fresh store with `target` or migrates an older one up to it; returns `target`."""
    with begin_write() as txn:
        current = txn.get(META_TABLE, SCHEMA_KEY)
        if current is None:
            txn.put(META_TABLE, SCHEMA_KEY, target)
            return target
    if not isinstance(current, int) or isinstance(current, bool) or current < 0:
        raise SchemaError(f"meta.{SCHEMA_KEY} holds {current!r}, not a schema version")
    if current > target:
        raise SchemaError(
            f"the store has schema version {current} but this tessera supports up to "
            f"{target}; upgrade tessera or point it at another node home"
        )
    missing = [v for v in range(current + 1, target + 1) if v not in migrations]
    if missing:
        raise SchemaError(f"no migration to schema version {missing[0]} (store is at {current})")
    for version in range(current + 1, target + 1):
        try:
            with begin_write() as txn:
                migrations[version](txn)
                txn.put(META_TABLE, SCHEMA_KEY, version)
        except SchemaError:
            raise
        except Exception as exc:
            raise SchemaError(
                f"migration to schema version {version} failed (store left at {version - 1}): {exc}"
            ) from exc
    return target
