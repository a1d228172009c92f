"""The compute a miner (and an auditor replaying it) does for one stage.

`forward` keeps what `backward` needs in a bounded cache keyed by batch id; `backward` turns the
next stage's gradient (or, on the last stage, the loss) into the previous stage's gradient and
steps AdamW every `accumulate` backward passes. A batch forwarded before an optimizer step and
backpropagated after it is recomputed with the current weights (no weight stashing), so the
result depends only on the order of calls, which an auditor replays.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training import checkpoint
from training.determinism import device as default_device
from training.digest import tensors_digest
from training.stages import StageModule

BatchId = Hashable


BOTTLENECK = ("squeeze.", "expand.")
"""Parameter name prefixes of the boundary bottleneck (`training.stages`)."""


class BatchNotCached(LookupError):
    """Backward for a batch whose forward state is not (or no longer) held."""


@dataclass(kw_only=True, slots=True)
class EngineConfig:
    lr: float = 6e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_steps: int = 0
    accumulate: int = 1
    max_grad_norm: float | None = 1.0
    cache_size: int = 8
    recompute: bool = False
    device: str | None = None
    bottleneck_lr: float = 1.0
    """The learning rate of the bottleneck's projections (`squeeze.*`, `expand.*`) as a share
    of `lr`."""

    def __post_init__(self) -> None:
        if self.accumulate < 1 or self.cache_size < 1 or self.warmup_steps < 0:
            raise ValueError("accumulate and cache_size must be >= 1, warmup_steps >= 0")
        if not 0 <= self.bottleneck_lr <= 1_000:
            raise ValueError("bottleneck_lr must be in [0, 1000]")


@dataclass(slots=True)
class _Entry:
    inputs: torch.Tensor
    targets: torch.Tensor | None
    output: torch.Tensor | None
    output_shape: torch.Size
    weights_version: int


class StageEngine:
    def __init__(self, module: StageModule, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.device = torch.device(self.config.device) if self.config.device else default_device()
        self.module = module.to(self.device)
        self.spec = module.spec
        named = list(module.named_parameters())
        params = [p for n, p in named if not n.startswith(BOTTLENECK)]
        groups: list[dict[str, Any]] = [
            {"params": [p for p in params if p.ndim >= 2], "lr_share": 1.0},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lr_share": 1.0},
        ]
        bottleneck = [p for n, p in named if n.startswith(BOTTLENECK)]
        if bottleneck:
            groups.append({"params": bottleneck, "lr_share": self.config.bottleneck_lr})
        self.optimizer = torch.optim.AdamW(
            groups,
            lr=self.config.lr,
            betas=self.config.betas,
            eps=self.config.eps,
            weight_decay=self.config.weight_decay,
        )
        self.weights_version = 0
        self.backward_passes = 0
        self.last_grad_norm: float | None = None
        self._cache: OrderedDict[BatchId, _Entry] = OrderedDict()
        self._gone: OrderedDict[BatchId, str] = OrderedDict()
        self._digest: str | None = None

    @property
    def pending(self) -> int:
        """Backward passes accumulated since the last optimizer step."""
        return self.backward_passes % self.config.accumulate

    def forward(
        self, batch_id: BatchId, inputs: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Activations for the next stage (on the last stage: the loss, given targets)."""
        if self.spec.is_last != (targets is not None):
            raise ValueError("targets are required on the last stage and only there")
        x = inputs.to(self.device)
        if not self.spec.is_first:
            x = x.detach().requires_grad_(True)
        y = targets.to(self.device) if targets is not None else None
        with torch.set_grad_enabled(not self.config.recompute):
            out: torch.Tensor = self.module(x, y)
        keep = None if self.config.recompute else out
        self._remember(batch_id, _Entry(x, y, keep, out.shape, self.weights_version))
        return out.detach()

    def backward(
        self, batch_id: BatchId, grad_output: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """Gradient w.r.t. this stage's input (None on stage 0); may step the optimizer.

        The last stage starts from its loss, scaled by 1/accumulate, and takes no grad_output.
        """
        if self.spec.is_last != (grad_output is None):
            raise ValueError("grad_output is required on every stage but the last")
        entry = self._take(batch_id, None if grad_output is None else grad_output.shape)
        out = entry.output
        if out is None or entry.weights_version != self.weights_version:
            with torch.enable_grad():
                out = self.module(entry.inputs, entry.targets)
        if grad_output is None:
            grad_output = torch.full_like(out, 1.0 / self.config.accumulate)
        out.backward(grad_output.to(self.device))
        grad = entry.inputs.grad
        grad_input = None if self.spec.is_first or grad is None else grad.detach()
        self.backward_passes += 1
        if self.pending == 0:
            self._step()
        return grad_input

    def backward_from_loss(self, batch_id: BatchId) -> torch.Tensor | None:
        """The last stage's backward: from the loss of `forward(batch_id, inputs, targets)`."""
        return self.backward(batch_id)

    def forget(self, batch_id: BatchId) -> None:
        """Drop a batch's cached forward state (e.g. its route's lease expired)."""
        if self._cache.pop(batch_id, None) is not None:
            self._mark_gone(batch_id, "was forgotten")

    def weights_digest(self) -> str:
        """blake3 digest of the stage's weights (sorted names, dtype, shape, bytes); cached."""
        if self._digest is None:
            self._digest = tensors_digest(dict(self.module.named_parameters()))
        return self._digest

    def state_dict(self) -> dict[str, torch.Tensor]:
        """CPU copies of the stage's weights, by the whole model's parameter names."""
        return checkpoint.weights(self.module)

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Replace the weights (e.g. by merged ones); optimizer state and counters are kept."""
        checkpoint.load_weights(self.module, tensors)
        self._weights_changed()

    def save(self, path: Path) -> None:
        """Weights, optimizer moments and counters to one safetensors file.

        Only at a step boundary: accumulated gradients are not saved, so a replay from a file
        saved mid-accumulation would diverge.
        """
        checkpoint.save(path, *self._saved_state())

    def checkpoint_bytes(self) -> bytes:
        """What `save` writes, as bytes (the checkpoint miners send and digest)."""
        return checkpoint.to_bytes(*self._saved_state())

    def _saved_state(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        if self.pending:
            raise RuntimeError(f"{self.pending} backward passes await the next optimizer step")
        tensors = checkpoint.weights(self.module)
        tensors |= checkpoint.optimizer_tensors(self.module, self.optimizer)
        meta = {"weights_version": str(self.weights_version), "stage": str(self.spec.index)}
        return tensors, {**meta, "backward_passes": str(self.backward_passes)}

    def load(self, path: Path) -> None:
        """Restore a `save`d state; the forward cache and pending gradients are dropped."""
        tensors, meta = checkpoint.load(path)
        prefix = checkpoint.OPTIMIZER_PREFIX
        checkpoint.load_weights(
            self.module, {k: v for k, v in tensors.items() if not k.startswith(prefix)}
        )
        checkpoint.load_optimizer_tensors(self.module, self.optimizer, tensors)
        self.optimizer.zero_grad(set_to_none=True)
        self._cache.clear()
        self.weights_version = int(meta.get("weights_version", "0"))
        self.backward_passes = int(meta.get("backward_passes", "0"))
        self._weights_changed()

    def _step(self) -> None:
        params = [p for p in self.module.parameters() if p.grad is not None]
        if self.config.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.last_grad_norm = float(norm)
        warmup = self.config.warmup_steps
        scale = min(1.0, (self.weights_version + 1) / warmup) if warmup else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * scale * group["lr_share"]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.weights_version += 1
        self._weights_changed()

    def _weights_changed(self) -> None:
        self._digest = None

    def _remember(self, batch_id: BatchId, entry: _Entry) -> None:
        self._cache.pop(batch_id, None)
        self._gone.pop(batch_id, None)
        self._cache[batch_id] = entry
        while len(self._cache) > self.config.cache_size:
            evicted, _ = self._cache.popitem(last=False)
            self._mark_gone(evicted, f"was evicted (cache holds {self.config.cache_size} batches)")

    def _take(self, batch_id: BatchId, grad_shape: torch.Size | None) -> _Entry:
        entry = self._cache.get(batch_id)
        if entry is None:
            why = self._gone.get(batch_id, "was never forwarded on this stage")
            raise BatchNotCached(f"no forward state for batch {batch_id!r}: it {why}")
        if grad_shape is not None and grad_shape != entry.output_shape:
            raise ValueError(
                f"grad_output shape {tuple(grad_shape)} != output shape "
                f"{tuple(entry.output_shape)} of batch {batch_id!r}"
            )
        del self._cache[batch_id]
        self._mark_gone(batch_id, "was already backpropagated")
        return entry

    def _mark_gone(self, batch_id: BatchId, why: str) -> None:
        self._gone[batch_id] = why
        while len(self._gone) > 4 * self.config.cache_size:
            self._gone.popitem(last=False)
