"""Key and value encoding, including property-based roundtrips."""

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import CorruptRecordError, Store
from store.codec import MAX_KEY_BYTES, decode_value, encode_key, encode_value

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
_map_keys = st.text() | st.binary() | st.integers(min_value=-(2**63), max_value=2**63)
values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_map_keys, inner, max_size=5),
    max_leaves=20,
)


@given(values)
def test_value_roundtrip(value: Any) -> None:
    decoded = decode_value(encode_value(value), table="t", key=b"k")
    assert decoded == value
    assert type(decoded) is type(value)


@given(st.text(min_size=1).filter(lambda s: len(s.encode()) <= MAX_KEY_BYTES))
def test_str_keys_are_utf8(key: str) -> None:
    assert encode_key(key) == key.encode("utf-8")


@given(st.binary(min_size=1, max_size=MAX_KEY_BYTES))
def test_bytes_keys_pass_through(key: bytes) -> None:
    assert encode_key(key) == key


@pytest.mark.parametrize("key", [b"", "", b"k" * (MAX_KEY_BYTES + 1), "é" * 256])
def test_rejects_empty_and_oversized_keys(key: bytes | str) -> None:
    with pytest.raises(ValueError, match="keys must be"):
        encode_key(key)


def test_rejects_non_key_types() -> None:
    with pytest.raises(TypeError):
        encode_key(42)  # type: ignore[arg-type]


def test_unencodable_value_raises_type_error() -> None:
    with pytest.raises(TypeError):
        encode_value(object())


@pytest.mark.parametrize(
    "garbage",
    [b"\xc1", b"\x92\x01", b"\xa2\xff\xfe", b"\x01\x02", msgpack.packb({(1,): 1})],
)
def test_garbage_raises_corrupt_record(garbage: bytes) -> None:
    with pytest.raises(CorruptRecordError) as info:
        decode_value(garbage, table="runs", key=b"r1")
    assert (info.value.table, info.value.key) == ("runs", b"r1")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(key=st.binary(min_size=1, max_size=MAX_KEY_BYTES), value=values)
def test_store_roundtrip(store: Store, key: bytes, value: Any) -> None:
    with store.write() as txn:
        txn.put("runs", key, value)
    with store.read() as txn:
        assert txn.get("runs", key) == value
