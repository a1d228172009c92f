"""Stage state as flat named tensors (weights plus AdamW moments) in safetensors files.

Keys: a parameter's name for its weight, `optimizer/<name>/<field>` for its optimizer state.
Gradients accumulated since the last optimizer step are not part of the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from safetensors.torch import save as to_safetensors
from torch import nn

OPTIMIZER_PREFIX = "optimizer/"


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of the module's parameters, by name."""
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters()}


@torch.no_grad()
def load_weights(module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy `tensors` into the module's parameters; names and shapes must match exactly."""
    params = dict(module.named_parameters())
    missing, unexpected = params.keys() - tensors.keys(), tensors.keys() - params.keys()
    if missing or unexpected:
        raise ValueError(f"weights mismatch: missing {sorted(missing)}, extra {sorted(unexpected)}")
    for name, param in params.items():
        if tensors[name].shape != param.shape:
            raise ValueError(f"{name}: shape {tuple(tensors[name].shape)} != {tuple(param.shape)}")
        param.copy_(tensors[name])


def optimizer_tensors(
    module: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, torch.Tensor]:
    out = {}
    for name, param in module.named_parameters():
        for field, value in optimizer.state.get(param, {}).items():
            if isinstance(value, torch.Tensor):
                out[f"{OPTIMIZER_PREFIX}{name}/{field}"] = value.detach().cpu().clone()
    return out


def load_optimizer_tensors(
    module: nn.Module, optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor]
) -> None:
    """Replace the optimizer's state with the one in `tensors` (empty state when none)."""
    optimizer.state.clear()
    for name, param in module.named_parameters():
        prefix = f"{OPTIMIZER_PREFIX}{name}/"
        fields = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        if fields:
            # AdamW keeps its step counter on the CPU and its moments beside the parameter.
            optimizer.state[param] = {
                f: v.clone() if f == "step" else v.to(param.device, copy=True)
                for f, v in fields.items()
            }


def save(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata))
    tmp.replace(path)


def to_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """What `save` writes, as bytes."""
    return to_safetensors({k: v.contiguous() for k, v in tensors.items()}, metadata=dict(metadata))


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    return load_file(str(path)), metadata
