"""Between a stage engine and the merge: what a member merges (its parameters and, with
`moments`, its AdamW moments), the seed parameters, the outer momentum a checkpoint carries, and
installing the merged vector into an engine and saving its checkpoint.

Merging the moments too makes the merged replicas' optimizer look like data-parallel AdamW's:
each replica's first moment is an average of its own gradients, and their mean is the average
of the mean gradient that one process at the global batch keeps. Moments are named as in a
checkpoint (`optimizer/<param>/exp_avg`, `.../exp_avg_sq`), zeros for a parameter that never
stepped, and sorted with the parameters into one layout, the same for every member.

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
MOMENTS = ("exp_avg", "exp_avg_sq")
"""The AdamW state a merge with `moments` averages (the step counter stays each member's)."""


def merge_tensors(engine: StageEngine, *, moments: bool) -> dict[str, torch.Tensor]:
    """What the member contributes: its weights, and with `moments` its AdamW moments."""
    out = engine.state_dict()
    if moments:
        for name, param in engine.module.named_parameters():
            state = engine.optimizer.state.get(param, {})
            for field in MOMENTS:
                value = state.get(field)
                out[f"{OPTIMIZER_PREFIX}{name}/{field}"] = (
                    value.detach().cpu().clone()
                    if isinstance(value, torch.Tensor)
                    else torch.zeros(tuple(param.shape))
                )
    return out


def start_tensors(layout: Layout, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The window-start values of every entry of `layout` from a checkpoint's (or the seed's)
    tensors: moments absent from it are zeros."""
    return {
        e.name: tensors[e.name] if e.name in tensors else torch.zeros(e.shape)
        for e in layout.entries
    }


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
    """Load the merged vector (`load_merged`) and the outer momentum into `engine`; its
    checkpoint bytes."""
    load_merged(engine, layout, params)
    by_name = dict(engine.module.named_parameters())
    if momentum is not None:
        for name, tensor in layout.unflatten(momentum).items():
            if name.startswith(OPTIMIZER_PREFIX):
                continue
            param = by_name[name]
            state = engine.optimizer.state[param]
            if "step" not in state:  # never stepped: AdamW's own initial state, made explicit
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
            state[MOMENTUM] = tensor.to(param.device)
    return engine.checkpoint_bytes()


def load_merged(engine: StageEngine, layout: Layout, params: torch.Tensor) -> None:
    """Load the merged vector into `engine`: its weights, and its moments where the layout has
    them. A parameter that never stepped keeps an empty optimizer state (its merged moments
    have no step count to go with)."""
    merged = layout.unflatten(params)
    weights = {n: t for n, t in merged.items() if not n.startswith(OPTIMIZER_PREFIX)}
    engine.load_state_dict(weights)
    by_name = dict(engine.module.named_parameters())
    for key, tensor in merged.items():
        if not key.startswith(OPTIMIZER_PREFIX):
            continue
        name, field = key.removeprefix(OPTIMIZER_PREFIX).rsplit("/", 1)
        state = engine.optimizer.state.get(by_name[name])
        if state and "step" in state:
            value = tensor.clamp_min(0) if field == "exp_avg_sq" else tensor  # lossy formats
            state[field] = value.to(by_name[name].device, copy=True)
