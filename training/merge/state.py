"""Between a stage engine and the merge: the seed parameters, the outer momentum a checkpoint
carries, and installing merged parameters into an engine and saving its checkpoint.

The outer momentum lives in the AdamW state of each parameter under `MOMENTUM`, so every
`StageEngine.save`/`load` keeps it (the optimizer ignores fields it does not know) and the
evaluator and auditors, which skip optimizer tensors, never see it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from training.checkpoint import OPTIMIZER_PREFIX
from training.engine import StageEngine
from training.merge.layout import Layout
from training.run_spec import RunSpec
from training.stages import StageModule, split_layers

MOMENTUM = "outer_momentum"


def seed_params(spec: RunSpec, stage: int) -> dict[str, torch.Tensor]:
    """The parameters stage `stage` starts from without a checkpoint (the spec's seed)."""
    model = spec.model_config()
    module = StageModule(model, split_layers(model.n_layers, spec.n_stages)[stage], seed=spec.seed)
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def outer_momentum(layout: Layout, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The outer momentum saved in a checkpoint's optimizer state (zeros where absent)."""
    out = torch.zeros(layout.size, dtype=torch.float32)
    for e in layout.entries:
        t = tensors.get(f"{OPTIMIZER_PREFIX}{e.name}/{MOMENTUM}")
        if t is not None and tuple(t.shape) == e.shape:
            out[e.offset : e.offset + e.numel] = t.reshape(-1).to(torch.float32)
    return out


def install_merged(
    engine: StageEngine,
    layout: Layout,
    params: torch.Tensor,
    momentum: torch.Tensor | None,
) -> bytes:
    """Load merged `params` (and the outer momentum) into `engine`; its checkpoint bytes."""
    engine.load_state_dict(layout.unflatten(params))
    if momentum is not None:
        by_name = dict(engine.module.named_parameters())
        for name, tensor in layout.unflatten(momentum).items():
            param = by_name[name]
            state = engine.optimizer.state[param]
            if "step" not in state:  # never stepped: AdamW's own initial state, made explicit
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
            state[MOMENTUM] = tensor.to(param.device)
    return engine.checkpoint_bytes()
