"""Fixtures for orchestrator-core tests: a real LMDB store in a temporary directory."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from store import Store, StoreConfig


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    with Store.open(store_path, StoreConfig(sync=False, map_size_mib=64)) as opened:
        yield opened
