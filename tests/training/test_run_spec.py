"""A run's spec: its data mix reaches every batch built from it, and the wire form keeps it."""

import pytest
import torch

from training.data import Dataset
from training.data.schedule import batch_plan
from training.run_spec import RunSpec

SPEC = RunSpec(model="tiny", vocab_size=512, batch_size=4, seq_len=16, batches_per_window=4,
               accumulate=2)  # fmt: skip


def test_the_data_mix_reaches_every_batch(dataset: Dataset) -> None:
    mixed = RunSpec(**{**SPEC.to_record(), "mixture": {"math": 1.0}})
    ids, targets = mixed.batch(dataset, 3, 1)
    want = dataset.batch(0, 3, 1, batch_size=4, seq_len=16, mixture={"math": 1.0})
    assert torch.equal(ids, want[0]) and torch.equal(targets, want[1])
    plan = batch_plan(dataset.train, 0, 3, 1, batch_size=4, seq_len=16, mixture={"math": 1.0})
    assert {domain for domain, _ in plan} == {"math"}
    equal = SPEC.batch(dataset, 3, 1)  # no mix: every domain alike, as before the field
    assert torch.equal(equal[0], dataset.batch(0, 3, 1, batch_size=4, seq_len=16)[0])
    assert not torch.equal(equal[0], ids)
    assert RunSpec.from_record(mixed.to_record()) == mixed


@pytest.mark.parametrize("mixture", [{"math": -1.0}, {"math": 0.0}, {"code": "x"}])
def test_a_bad_mix_is_refused(mixture: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RunSpec(**{**SPEC.to_record(), "mixture": mixture})
