"""A stage's state for an audit: the engine a miner builds, and checkpoint weights and digests.

Checkpoints are `StageEngine.save` files (safetensors: weights, AdamW moments under
`optimizer/`, counters in the metadata), handled as bytes as they travel and sit in blob stores.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from training import checkpoint as ckpt
from training.digest import tensors_digest
from training.engine import StageEngine
from training.run_spec import RunSpec
from training.stages import StageModule, split_layers
from verification.compare import MISSHAPEN, Comparison, combined


def build_engine(
    spec: RunSpec,
    stage: int,
    checkpoint: bytes | None,
    *,
    device: str = "cpu",
    cache: int = 8,
    dtype: torch.dtype = torch.float32,
) -> StageEngine:
    """The stage's engine as a miner builds it, loaded from `checkpoint` (None: seed init).

    `dtype` other than float32 is for calibration only (a float64 reference replay).
    """
    if not 0 <= stage < spec.n_stages:
        raise ValueError(f"stage {stage} outside 0..{spec.n_stages - 1}")
    model = spec.model_config()
    stage_spec = split_layers(model.n_layers, spec.n_stages)[stage]
    module = StageModule(model, stage_spec, seed=spec.seed if checkpoint is None else None)
    module.to(dtype)
    engine = StageEngine(module, spec.engine_config(device=device, cache_size=max(cache, 1)))
    if checkpoint is not None:
        with tempfile.TemporaryDirectory(prefix="tessera-replay-") as tmp:
            path = Path(tmp) / "start.safetensors"
            path.write_bytes(checkpoint)
            engine.load(path)
        for state in engine.optimizer.state.values():
            for field, value in state.items():
                if field != "step" and isinstance(value, torch.Tensor):
                    state[field] = value.to(dtype)
    return engine


def checkpoint_bytes(engine: StageEngine) -> bytes:
    """`engine.save` as bytes (at a step boundary, as the engine requires)."""
    with tempfile.TemporaryDirectory(prefix="tessera-ckpt-") as tmp:
        path = Path(tmp) / "c.safetensors"
        engine.save(path)
        return path.read_bytes()


def checkpoint_weights(checkpoint: bytes) -> dict[str, torch.Tensor]:
    """The weights in a `StageEngine.save` file (optimizer moments left out)."""
    tensors = load_safetensors(bytes(checkpoint))
    return {k: v for k, v in tensors.items() if not k.startswith(ckpt.OPTIMIZER_PREFIX)}


def checkpoint_digest(checkpoint: bytes) -> str:
    """The `weights_digest()` of an engine loaded from `checkpoint`."""
    return tensors_digest(checkpoint_weights(checkpoint))


def compare_weights(
    claimed: Mapping[str, torch.Tensor], replayed: Mapping[str, torch.Tensor]
) -> Comparison:
    """Claimed weights (e.g. `checkpoint_weights` of a reported checkpoint) against replayed
    ones, all tensors taken as one vector; misshapen when the names differ."""
    if claimed.keys() != replayed.keys():
        return MISSHAPEN
    return combined([(claimed[k], replayed[k]) for k in sorted(claimed)])
