"""StoreConfig defaults and validation."""

from typing import Any

import pytest

from store import StoreConfig


def test_defaults() -> None:
    config = StoreConfig()
    assert (config.map_size_mib, config.sync, config.max_readers) == (1024, True, 126)
    assert config.blob_retention_s == 86400.0
    assert config.map_size_bytes == 1024 * 1024 * 1024


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("map_size_mib", 0),
        ("map_size_mib", -5),
        ("map_size_mib", 1.5),
        ("max_readers", 0),
        ("blob_retention_s", 0.0),
        ("blob_retention_s", -1.0),
        ("blob_retention_s", float("nan")),
        ("blob_retention_s", float("inf")),
    ],
)
def test_rejects_invalid_values(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"store.{field}"):
        StoreConfig(**{field: value})


def test_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        StoreConfig(64)  # type: ignore[call-arg]
