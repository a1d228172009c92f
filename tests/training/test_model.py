import math

import pytest
import torch

from training.model import ModelConfig, Transformer


def _ids(config: ModelConfig, batch: int = 2, seq: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, seq), generator=g)


def test_attention_is_causal(tiny: ModelConfig) -> None:
    model = Transformer(tiny)
    ids = _ids(tiny)
    changed = ids.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % tiny.vocab_size
    a, b = model(ids), model(changed)
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_init_depends_only_on_seed(tiny: ModelConfig) -> None:
    a, b, c = Transformer(tiny, seed=3), Transformer(tiny, seed=3), Transformer(tiny, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["layers.0.attn.wqkv.weight"], sc["layers.0.attn.wqkv.weight"])
    assert torch.equal(sa["norm.weight"], torch.ones(tiny.dim))
    wo = sa["layers.1.attn.wo.weight"].std()
    assert wo < sa["layers.1.attn.wqkv.weight"].std() / 2  # residual projections scaled down


def test_loss_of_untrained_model_is_near_uniform(tiny: ModelConfig) -> None:
    ids = _ids(tiny, seq=33)
    loss = Transformer(tiny)(ids[:, :-1], ids[:, 1:]).detach()
    assert loss.shape == ()
    assert abs(float(loss) - math.log(tiny.vocab_size)) < 0.1


def test_sequence_longer_than_max_is_refused(tiny: ModelConfig) -> None:
    with pytest.raises(ValueError, match="max_seq_len"):
        Transformer(tiny)(_ids(tiny, seq=tiny.max_seq_len + 1))
