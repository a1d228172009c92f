"""Encoding of keys (bytes, or str as UTF-8) and values (msgpack) for LMDB records."""

from __future__ import annotations

from typing import Any

import msgpack

from store.errors import CorruptRecordError

Key = bytes | str

# LMDB's compile-time limit for keys (MDB_MAXKEYSIZE) in the default build.
MAX_KEY_BYTES = 511


def encode_prefix(prefix: Key) -> bytes:
    """A key prefix as bytes; unlike a key it may be empty."""
    if isinstance(prefix, str):
        return prefix.encode("utf-8")
    if isinstance(prefix, bytes):
        return prefix
    raise TypeError(f"keys are bytes or str, got {type(prefix).__name__}")


def encode_key(key: Key) -> bytes:
    """A key as bytes: str is UTF-8 encoded; the result must be 1..MAX_KEY_BYTES long."""
    raw = encode_prefix(key)
    if not 0 < len(raw) <= MAX_KEY_BYTES:
        raise ValueError(f"keys must be 1..{MAX_KEY_BYTES} bytes long, got {len(raw)}")
    return raw


def encode_value(value: Any) -> bytes:
    """A value as msgpack; TypeError or OverflowError if msgpack cannot represent it."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def decode_value(data: bytes, *, table: str, key: bytes) -> Any:
    """The value stored at `table`/`key`; raises CorruptRecordError if it is not msgpack."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptRecordError(table, key, f"{type(exc).__name__}: {exc}") from exc
