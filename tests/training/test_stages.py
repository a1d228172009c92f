import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from training.model import ModelConfig, Transformer
from training.stages import StageModule, build_stages, full_model_forward, split_layers


@given(st.integers(1, 64).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))))
def test_split_covers_every_layer_once(case: tuple[int, int]) -> None:
    n_layers, n_stages = case
    specs = split_layers(n_layers, n_stages)
    assert [s.index for s in specs] == list(range(n_stages))
    assert [layer for s in specs for layer in s.layers] == list(range(n_layers))
    sizes = [len(s.layers) for s in specs]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert specs[0].is_first and specs[-1].is_last


@pytest.mark.parametrize(("n_layers", "n_stages"), [(4, 5), (4, 0), (0, 1)])
def test_split_rejects_impossible(n_layers: int, n_stages: int) -> None:
    with pytest.raises(ValueError, match="cannot split"):
        split_layers(n_layers, n_stages)


def test_stage_weights_are_slices_of_the_whole_model(tiny: ModelConfig) -> None:
    whole = Transformer(tiny, seed=5).state_dict()
    stages = build_stages(tiny, 3, seed=5)
    seen: set[str] = set()
    for stage in stages:
        for name, tensor in stage.state_dict().items():
            assert torch.equal(tensor, whole[name]), name
            assert name not in seen
            seen.add(name)
    assert seen == set(whole)
    assert "embed.weight" in stages[0].state_dict()
    assert "head.weight" in stages[-1].state_dict() and "head.weight" not in stages[0].state_dict()


@pytest.mark.parametrize("n_stages", [1, 2, 3])
def test_chained_stages_equal_whole_model_bitwise(tiny: ModelConfig, n_stages: int) -> None:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, tiny.vocab_size, (3, 33), generator=g)
    whole = Transformer(tiny, seed=2)
    stages = build_stages(tiny, n_stages, seed=2)
    expected = whole(ids[:, :-1], ids[:, 1:])
    got = full_model_forward(stages, ids[:, :-1], ids[:, 1:])
    assert torch.equal(got, expected)
    assert torch.equal(full_model_forward(stages, ids[:, :-1]), whole(ids[:, :-1]))


def test_stage_zero_refuses_activations_and_chain_must_be_complete(tiny: ModelConfig) -> None:
    stages = build_stages(tiny, 2)
    with pytest.raises(TypeError, match="token ids"):
        stages[0](torch.zeros(1, 4, tiny.dim))
    with pytest.raises(ValueError, match="complete split"):
        full_model_forward(stages[1:], torch.zeros(1, 4, dtype=torch.long))
    assert isinstance(stages[1], StageModule) and not hasattr(stages[1], "embed")
