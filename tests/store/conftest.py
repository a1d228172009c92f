"""Fixtures for store tests: a fresh store in a temporary directory."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from store import BlobStore, Store, StoreConfig


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    with Store.open(store_path, StoreConfig(sync=False)) as opened:
        yield opened


@pytest.fixture
def blobs(store: Store) -> BlobStore:
    return BlobStore(store)
