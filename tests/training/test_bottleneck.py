"""The learned bottleneck at stage boundaries: widths, names, the paired initialisation of the
two stages that hold a boundary, the run spec's compression ratio, and that it trains."""

import pytest
import torch
from torch import nn

from training.engine import StageEngine
from training.model import ModelConfig
from training.presets import preset
from training.run_spec import RunSpec
from training.stages import StageModule, full_model_forward, split_layers


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _stages(config: ModelConfig, n: int = 3) -> list[StageModule]:
    return [StageModule(config, s, seed=7) for s in split_layers(config.n_layers, n)]


def test_each_boundary_has_a_squeeze_and_an_expand_built_apart_but_paired() -> None:
    config = preset("tiny", bottleneck=16)
    stages = _stages(config)
    names = [{n for n, _ in s.named_parameters() if n.startswith(("squeeze", "expand"))}
             for s in stages]  # fmt: skip
    assert names == [{"squeeze.0.weight"}, {"expand.0.weight", "squeeze.1.weight"},
                     {"expand.1.weight"}]  # fmt: skip
    for k in (0, 1):
        down = _weight(stages[k].squeeze[str(k)])
        up = _weight(stages[k + 1].expand[str(k)])
        assert down.shape == (16, 64) and torch.allclose(up, down.T * 2.0)  # sqrt(64 / 16)
    # at the start the next stage receives the residual stream's projection onto 16 dimensions,
    # at the stream's RMS
    squeeze = _weight(stages[0].squeeze["0"])
    gram = squeeze @ squeeze.T
    assert torch.allclose(gram.diagonal(), torch.ones(16), atol=0.5)
    x = torch.randn(4096, 64)
    with torch.no_grad():
        back = stages[1].expand["0"](stages[0].squeeze["0"](x))
    assert 0.8 < float(back.norm() / x.norm()) < 1.25


def test_stages_exchange_the_bottleneck_width_both_ways() -> None:
    config = preset("tiny", bottleneck=8)
    stages = _stages(config)
    ids = torch.randint(0, config.vocab_size, (2, 16))
    act = stages[0](ids)
    assert act.shape == (2, 16, 8)
    received = act.detach().requires_grad_()
    out = stages[1](received)
    assert out.shape == (2, 16, 8)
    out.sum().backward()
    assert received.grad is not None and received.grad.shape == (2, 16, 8)
    assert torch.isfinite(full_model_forward(stages, ids, ids))


def test_run_spec_compress_sets_the_bottleneck() -> None:
    assert RunSpec(model="small").model_config().bottleneck == 0
    assert RunSpec(model="small", compress=1).model_config().bottleneck == 0
    assert RunSpec(model="small", compress=16).model_config().wire_dim == 288 // 16
    assert RunSpec(model="small", compress=64).model_config().wire_dim == 4
    assert RunSpec.from_record(RunSpec(compress=4).to_record()).compress == 4
    for bad in (-1, 1000):
        with pytest.raises(ValueError, match="compress"):
            RunSpec(model="small", compress=bad)
    with pytest.raises(ValueError, match="bottleneck"):
        preset("tiny", bottleneck=65)
    with pytest.raises(ValueError, match="compress_lr"):
        RunSpec(model="small", compress=16, compress_lr=-0.1)


def test_a_compressed_split_learns() -> None:
    torch.manual_seed(0)
    config = preset("tiny", bottleneck=16)
    stages = _stages(config)
    params = [p for s in stages for p in s.parameters()]
    opt = torch.optim.AdamW(params, lr=3e-3)
    ids = torch.randint(0, config.vocab_size, (4, 32))
    losses = []
    for _ in range(30):
        loss = full_model_forward(stages, ids[:, :-1], ids[:, 1:])
        opt.zero_grad()
        torch.autograd.backward(loss)
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert stages[0].squeeze["0"].weight.grad is not None  # the bottleneck itself is trained


@pytest.mark.parametrize("share", [0.0, 0.2, 1.0])
def test_the_bottleneck_learns_at_its_share_of_the_learning_rate(share: float) -> None:
    config = preset("tiny", bottleneck=16)
    stage = StageModule(config, split_layers(config.n_layers, 3)[1], seed=7)
    spec = RunSpec(model="tiny", compress=4, compress_lr=share, lr=1e-2, accumulate=1)
    engine = StageEngine(stage, spec.engine_config())
    before = {n: p.detach().clone() for n, p in stage.named_parameters()}
    x = torch.randn(2, 8, 16)
    out = engine.forward("b", x)
    engine.backward("b", torch.randn_like(out))
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in stage.named_parameters()}
    # AdamW's first step moves a weight by about lr (plus the decoupled decay, lr * 0.1 * w)
    for name in ("expand.0.weight", "squeeze.1.weight"):
        assert moved[name] == pytest.approx(1e-2 * share, rel=0.15, abs=1e-9)
    assert moved["layers.2.attn.wqkv.weight"] == pytest.approx(1e-2, rel=0.15)
