import math

import pytest
import torch

from training.data import Dataset
from training.evaluate import EvalConfig, chained_loss_fn, evaluate, mean_loss
from training.model import ModelConfig, Transformer
from training.stages import build_stages

EVAL = EvalConfig(batch_size=4, seq_len=32, max_batches=2)


def test_chained_stages_evaluate_like_the_whole_model(dataset: Dataset, tiny: ModelConfig) -> None:
    whole = evaluate(Transformer(tiny, seed=3), dataset, EVAL)
    chained = evaluate(chained_loss_fn(build_stages(tiny, 2, seed=3)), dataset, EVAL)
    assert whole == chained
    assert set(whole) == {"code", "math", "prose"}
    for result in whole.values():
        assert result.sequences == 8
        assert result.perplexity == pytest.approx(math.exp(result.loss))
        assert abs(result.loss - math.log(tiny.vocab_size)) < 0.3
    assert mean_loss(whole) == pytest.approx(sum(r.loss for r in whole.values()) / 3)


def test_evaluate_uses_heldout_data_only(dataset: Dataset) -> None:
    seen: list[torch.Tensor] = []

    def loss_fn(ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(ids)
        return torch.tensor(1.0)

    result = evaluate(loss_fn, dataset, EVAL, domains=["math"])
    assert list(result) == ["math"] and result["math"].loss == 1.0
    first = dataset.heldout["math"][:32].astype("int64").tolist()
    assert seen[0][0].tolist() == first
