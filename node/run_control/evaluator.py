"""Held-out evaluation of a closed window: the stage checkpoints chained into the whole model.

Runs in a worker thread (torch releases the GIL); the result is per-domain loss and perplexity,
the data-mixing evaluation of SN9.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from safetensors.torch import load as load_safetensors

from training.checkpoint import OPTIMIZER_PREFIX, load_weights
from training.data.dataset import Dataset
from training.evaluate import EvalConfig, chained_loss_fn, evaluate
from training.run_spec import RunSpec
from training.stages import StageModule, split_layers


def evaluate_checkpoints(
    spec: RunSpec, dataset: Dataset, checkpoints: Mapping[int, bytes], *, max_batches: int
) -> dict[str, dict[str, float]]:
    """{domain: {"loss", "perplexity"}} of the model made of each stage's checkpoint bytes."""
    if sorted(checkpoints) != list(range(spec.n_stages)):
        raise ValueError(f"need one checkpoint per stage, got stages {sorted(checkpoints)}")
    model = spec.model_config()
    specs = split_layers(model.n_layers, spec.n_stages)
    stages = []
    for index, stage_spec in enumerate(specs):
        module = StageModule(model, stage_spec, seed=None)
        tensors = load_safetensors(checkpoints[index])
        weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}
        load_weights(module, weights)
        stages.append(module.eval())
    config = EvalConfig(batch_size=spec.batch_size, seq_len=spec.seq_len, max_batches=max_batches)
    with torch.inference_mode():
        results = evaluate(chained_loss_fn(stages), dataset, config)
    return {d: {"loss": r.loss, "perplexity": r.perplexity} for d, r in results.items()}
