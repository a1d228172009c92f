import pytest

from training.model import ModelConfig, Transformer
from training.presets import PRESETS, parameter_count, preset


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("tiny", 50_000, 1_000_000),
        ("small", 9_000_000, 11_000_000),
        ("base-125m", 110_000_000, 140_000_000),
        ("large-1b", 900_000_000, 1_200_000_000),
    ],
)
def test_preset_sizes(name: str, low: int, high: int) -> None:
    assert low <= parameter_count(PRESETS[name]) <= high


def test_small_preset_exact_count() -> None:
    assert parameter_count(preset("small")) == 10_326_816


def test_parameter_count_matches_a_built_model(tiny: ModelConfig) -> None:
    model = Transformer(tiny, seed=0)
    assert parameter_count(tiny) == sum(p.numel() for p in model.parameters())


def test_preset_overrides_and_unknown_name() -> None:
    assert preset("small", vocab_size=1000).vocab_size == 1000
    assert PRESETS["small"].vocab_size == 4096
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_config_rejects_odd_head_split() -> None:
    with pytest.raises(ValueError, match="heads"):
        ModelConfig(vocab_size=8, dim=30, n_layers=1, n_heads=4, ffn_hidden=8, max_seq_len=8)
