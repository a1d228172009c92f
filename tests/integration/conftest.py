"""Integration tests: real `tessera` processes on loopback, the tiny model, one shared corpus."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One corpus/tokenizer cache for every devnet of the session (built once, about 1 s)."""
    return tmp_path_factory.mktemp("devnet-data")
