"""bench/soak.py's verdicts: a level that rises is not flat, one sample's burst is (under the
level rule, not under the max rule), and a store's creep shows in its slope."""

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_bench", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _samples(fds: Any, lmdb: Any, minutes: int = 60) -> list[tuple[float, Any]]:
    out = []
    for i in range(minutes * 2):
        t = i * 30.0
        figures = {"rss_mib": 800.0, "fds": float(fds(t)), "lmdb_used_mib": float(lmdb(t))}
        figures |= {"lmdb_data_mib": 1.0, "blob_mib": 0.0, "blobs": 0}
        out.append((t, {"node": figures}))
    return out


def test_one_bursty_sample_is_flat_by_level_not_by_max(soak: ModuleType) -> None:
    node = soak.summarise(_samples(lambda t: 88 if t == 1800 else 78, lambda t: 5), 600)
    node = node["node"]
    assert node["fds_flat"] and node["rss_flat"] and node["lmdb_flat"]
    assert not node["fds_max_flat"] and node["max_after_warmup"]["fds"] == 88


def test_a_rising_level_is_not_flat(soak: ModuleType) -> None:
    node = soak.summarise(_samples(lambda t: 78 + t / 150, lambda t: 5), 600)["node"]
    assert not node["fds_flat"] and node["rss_flat"]


def test_a_store_creeping_within_10_percent_is_flat_but_its_slope_shows(
    soak: ModuleType,
) -> None:
    def creeping(t: float) -> float:
        return 348.0 + t / 60 * 0.1  # 0.1 MiB a minute: within 10 % over 50 minutes

    node = soak.summarise(_samples(lambda t: 78, creeping), 600)["node"]
    assert node["lmdb_flat"] and node["lmdb_used_mib_per_hour"] == pytest.approx(6.0)
    still = soak.summarise(_samples(lambda t: 78, lambda t: 349.0), 600)["node"]
    assert still["lmdb_used_mib_per_hour"] == 0
    filling = soak.summarise(_samples(lambda t: 78, lambda t: 1.3 + t / 6000), 600)["node"]
    assert not filling["lmdb_flat"]
