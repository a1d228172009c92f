"""Read and write transactions over the store's named tables.

A transaction wraps one LMDB transaction. Values go through the msgpack codec; `get_raw` and
`put_raw` bypass it for opaque bytes such as blob contents. LMDB errors are mapped to store
errors by the translator the owning `Store` hands in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lmdb

from store.codec import Key, decode_value, encode_key, encode_prefix, encode_value
from store.errors import StoreClosedError, StoreError, UnknownTableError

Translator = Callable[[lmdb.Error], StoreError]


class ReadTxn:
    """A consistent snapshot of every table, valid inside its `with store.read()` block."""

    __slots__ = ("_active", "_dbs", "_raw", "_translate")

    def __init__(self, raw: Any, dbs: Mapping[str, Any], translate: Translator) -> None:
        self._raw = raw
        self._dbs = dbs
        self._translate = translate
        self._active = True

    def get(self, table: str, key: Key) -> Any | None:
        """The decoded value at `key`, or None if absent."""
        raw_key = encode_key(key)
        data = self._get(table, raw_key)
        return None if data is None else decode_value(data, table=table, key=raw_key)

    def get_raw(self, table: str, key: Key) -> bytes | None:
        """The stored bytes at `key`, undecoded, or None if absent."""
        return self._get(table, encode_key(key))

    def scan(self, table: str, prefix: Key = b"") -> Iterator[tuple[bytes, Any]]:
        """(key, decoded value) pairs whose key starts with `prefix`, in key order."""
        raw_prefix = encode_prefix(prefix)
        for key, data in self._cursor_from(table, raw_prefix):
            if not key.startswith(raw_prefix):
                return
            yield key, decode_value(data, table=table, key=key)

    def range(
        self, table: str, start: Key = b"", stop: Key | None = None
    ) -> Iterator[tuple[bytes, Any]]:
        """(key, decoded value) pairs with `start <= key < stop` (no upper bound if None)."""
        raw_stop = None if stop is None else encode_prefix(stop)
        for key, data in self._cursor_from(table, encode_prefix(start)):
            if raw_stop is not None and key >= raw_stop:
                return
            yield key, decode_value(data, table=table, key=key)

    def count(self, table: str) -> int:
        """The number of records in `table`."""
        db = self._db(table)
        try:
            return int(self._raw.stat(db)["entries"])
        except lmdb.Error as exc:
            raise self._translate(exc) from exc

    def pages(self, table: str) -> int:
        """The pages `table` holds (branch, leaf and overflow)."""
        db = self._db(table)
        try:
            stat = self._raw.stat(db)
        except lmdb.Error as exc:
            raise self._translate(exc) from exc
        return int(stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"])

    def _get(self, table: str, raw_key: bytes) -> bytes | None:
        db = self._db(table)
        try:
            data: bytes | None = self._raw.get(raw_key, db=db)
        except lmdb.Error as exc:
            raise self._translate(exc) from exc
        return data

    def _cursor_from(self, table: str, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        db = self._db(table)
        try:
            cursor = self._raw.cursor(db=db)
            positioned = cursor.set_range(start) if start else cursor.first()
            if not positioned:
                return
            while True:
                yield cursor.key(), cursor.value()
                self._check()
                if not cursor.next():
                    return
        except lmdb.Error as exc:
            raise self._translate(exc) from exc

    def _db(self, table: str) -> Any:
        self._check()
        try:
            return self._dbs[table]
        except KeyError:
            raise UnknownTableError(table) from None

    def _check(self) -> None:
        if not self._active:
            raise StoreClosedError("the transaction has ended; open a new one")

    def _abandon(self) -> None:
        """Marks the transaction ended without touching LMDB; called by the owning Store only."""
        self._active = False

    def _end(self, *, commit: bool) -> None:
        """Commits or aborts the LMDB transaction; called by the owning Store only."""
        if not self._active:
            return
        self._active = False
        try:
            if commit:
                self._raw.commit()
            else:
                self._raw.abort()
        except lmdb.Error as exc:
            raise self._translate(exc) from exc


class WriteTxn(ReadTxn):
    """The single write transaction: commits when its `with` block ends, aborts on exception."""

    __slots__ = ()

    def put(self, table: str, key: Key, value: Any) -> None:
        """Stores `value` (msgpack-encodable) at `key`, replacing any previous value."""
        self._put(table, encode_key(key), encode_value(value))

    def put_raw(self, table: str, key: Key, data: bytes | memoryview) -> None:
        """Stores `data` at `key` as is, without the codec."""
        self._put(table, encode_key(key), data)

    def delete(self, table: str, key: Key) -> bool:
        """Removes `key`; True if it was present."""
        db = self._db(table)
        try:
            return bool(self._raw.delete(encode_key(key), db=db))
        except lmdb.Error as exc:
            raise self._translate(exc) from exc

    def _put(self, table: str, raw_key: bytes, data: bytes | memoryview) -> None:
        db = self._db(table)
        try:
            self._raw.put(raw_key, data, db=db)
        except lmdb.Error as exc:
            raise self._translate(exc) from exc
