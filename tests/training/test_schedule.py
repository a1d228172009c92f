import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import Dataset
from training.data.schedule import batch, batch_plan
from training.digest import tensor_digest


def test_same_arguments_same_batch(dataset: Dataset) -> None:
    ids, targets = dataset.batch(1, 2, 3, batch_size=6, seq_len=32)
    assert ids.shape == targets.shape == (6, 32) and ids.dtype == torch.int64
    assert torch.equal(ids[:, 1:], targets[:, :-1])
    again = dataset.batch(1, 2, 3, batch_size=6, seq_len=32)
    assert torch.equal(ids, again[0]) and torch.equal(targets, again[1])


@pytest.mark.parametrize("args", [(2, 2, 3), (1, 3, 3), (1, 2, 4)])
def test_different_position_different_batch(dataset: Dataset, args: tuple[int, int, int]) -> None:
    assert not torch.equal(
        dataset.batch(1, 2, 3, batch_size=6, seq_len=32)[0],
        dataset.batch(*args, batch_size=6, seq_len=32)[0],
    )


def test_rows_follow_the_mixture(dataset: Dataset) -> None:
    for index in range(20):
        domains = [d for d, _ in batch_plan(dataset.train, 0, 0, index, batch_size=6, seq_len=32)]
        assert sorted(domains) == ["code", "code", "math", "math", "prose", "prose"]
    plan = batch_plan(
        dataset.train, 0, 0, 0, batch_size=6, seq_len=32, mixture={"math": 1.0, "code": 0.0}
    )
    assert {d for d, _ in plan} == {"math"}
    only_math = dataset.batch(0, 0, 0, batch_size=6, seq_len=32, mixture={"math": 1.0})
    direct = batch({"math": dataset.train["math"]}, 0, 0, 0, batch_size=6, seq_len=32)
    assert torch.equal(only_math[0], direct[0])
    with pytest.raises(ValueError, match="unknown domains"):
        dataset.batch(0, 0, 0, batch_size=6, seq_len=32, mixture={"poetry": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        dataset.batch(0, 0, 0, batch_size=6, seq_len=32, mixture={"math": 0.0})


def test_rows_are_packed_sequences_of_their_domain(dataset: Dataset) -> None:
    ids, targets = dataset.batch(5, 0, 7, batch_size=6, seq_len=32)
    for row, (domain, k) in enumerate(batch_plan(dataset.train, 5, 0, 7, batch_size=6, seq_len=32)):
        stream = dataset.train[domain].astype(np.int64)
        assert ids[row].tolist() == stream[k * 32 : k * 32 + 32].tolist()
        assert targets[row].tolist() == stream[k * 32 + 1 : k * 32 + 33].tolist()


def test_fresh_process_rebuilds_the_same_batch(dataset: Dataset, data_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from tests.training.conftest import small_data_config\n"
        "from training.data import build_dataset\n"
        "from training.digest import tensor_digest\n"
        "ds = build_dataset(small_data_config(Path(sys.argv[1])))\n"
        "ids, targets = ds.batch(11, 4, 9, batch_size=6, seq_len=32)\n"
        "print(ds.digest, tensor_digest(ids), tensor_digest(targets))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        timeout=60,
    )
    ids, targets = dataset.batch(11, 4, 9, batch_size=6, seq_len=32)
    assert out.stdout.split() == [dataset.digest, tensor_digest(ids), tensor_digest(targets)]


def test_eval_batches_are_fixed_heldout_sequences(dataset: Dataset) -> None:
    batches = list(dataset.eval_batches("prose", batch_size=4, seq_len=32, max_batches=3))
    assert len(batches) == 3
    again = list(dataset.eval_batches("prose", batch_size=4, seq_len=32, max_batches=3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    held = dataset.heldout["prose"].astype(np.int64)
    assert batches[0][0][1].tolist() == held[32:64].tolist()
    assert tensor_digest(batches[0][0]) != tensor_digest(
        dataset.batch(0, 0, 0, batch_size=6, seq_len=32)[0]
    )
