"""Shared fixtures: a small built dataset (once per session), deterministic torch settings, and
an honest two-window run of the 3-stage tiny pipeline (the reference the audits are tried on)."""

from collections.abc import Iterator

import pytest
import torch

from tests.verification.kit import SPEC, WindowRun, run_window
from training.data import DataConfig, Dataset, build_dataset
from training.determinism import set_determinism


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    config = DataConfig(
        cache_dir=tmp_path_factory.mktemp("data"),
        vocab_size=512,
        code_max_bytes=250_000,
        prose_max_bytes=120_000,
        math_documents=150,
    )
    return build_dataset(config)


@pytest.fixture(autouse=True)
def deterministic() -> Iterator[None]:
    """One intra-op thread, as the training tests (and miners sharing cores) use."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    set_determinism(0, threads=1)
    yield
    torch.use_deterministic_algorithms(was_deterministic)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def honest(dataset: Dataset) -> list[WindowRun]:
    """Windows 0 (from the seed) and 1 (from window 0's checkpoints) of an honest pipeline."""
    set_determinism(0, threads=1)
    first = run_window(SPEC, dataset, 0, [None] * SPEC.n_stages)
    second = run_window(SPEC, dataset, 1, list(first.ends), holdings=first.holdings)
    return [first, second]
