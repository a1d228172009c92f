"""The units of work, run on the compute thread: forward and backward of one batch on one stage.

Each returns the tensor to send on (if any) and one `UnitRecord` per unit of work, holding the
raw input and output bytes exactly as they travel on the wire, their blake3 digests (the envelope
digest, so a neighbour's receipt names the same bytes) and the stage's weights digest at the
time. Activations and gradients cross in the run's wire format (`training.wire`: float32, or
int8 with a scale per sequence and channel). Conventions: stage 0's forward input is the batch's
token ids (int64); the last stage's forward output, and so its backward input, is the loss as a
float32 scalar; stage 0's backward output is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from node.mining.state import BatchKey, StageHolding
from node.mining.time_split import Laps
from p2p.envelope import digest
from p2p.tensors import TensorPayload
from p2p.transport import Buffer

FORWARD = "forward"
BACKWARD = "backward"


@dataclass(frozen=True, slots=True)
class UnitRecord:
    direction: str
    inputs: Buffer
    outputs: Buffer
    input_digest: bytes
    output_digest: bytes
    weights_version: str
    loss: float | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    units: tuple[UnitRecord, ...]
    send: TensorPayload | None
    """The activation for stage + 1, or the gradient for stage - 1; None at the route's end."""
    seconds: Mapping[str, float] = field(default_factory=dict)
    """The job's time by part (`node.mining.time_split.JOB_PARTS`)."""


def _unit(
    direction: str, inputs: Buffer, outputs: Buffer, version: str, loss: float | None = None
) -> UnitRecord:
    return UnitRecord(direction, inputs, outputs, digest(inputs), digest(outputs), version, loss)


def _targets(holding: StageHolding, key: BatchKey) -> tuple[torch.Tensor, torch.Tensor]:
    window, batch, _ = key
    return holding.spec.batch(holding.dataset, window, batch)


def forward(holding: StageHolding, key: BatchKey, payload: TensorPayload | None) -> StepResult:
    """Forward of `key` (stage 0 rebuilds its input from the schedule; `payload` is None).

    The last stage computes the loss and runs its backward at once.
    """
    engine = holding.engine
    laps = Laps()
    targets: torch.Tensor | None = None
    if holding.is_first:
        x, targets = _targets(holding, key)
        payload = TensorPayload.from_torch(x)
    else:
        if payload is None:
            raise ValueError("a stage after the first needs its input activation")
        x = holding.wire.decode(payload)
        if holding.is_last:
            targets = _targets(holding, key)[1]
    laps.lap("serialise")
    version = engine.weights_digest()
    laps.lap("digests")
    out = engine.forward(key, x, targets if holding.is_last else None)
    laps.lap("compute")
    if not holding.is_last:
        sent = holding.wire.encode(out)
        laps.lap("serialise")
        units = (_unit(FORWARD, payload.data, sent.data, version),)
        laps.lap("digests")
        return StepResult(units, sent, laps.seconds)
    loss_bytes = out.detach().to(torch.float32).reshape(1).cpu().numpy().tobytes()
    laps.lap("serialise")
    fwd = _unit(FORWARD, payload.data, loss_bytes, version, float(out))
    laps.lap("digests")
    grad = engine.backward_from_loss(key)
    laps.lap("compute")
    back = holding.wire.encode(grad) if grad is not None else None
    laps.lap("serialise")
    bwd = _unit(BACKWARD, loss_bytes, back.data if back is not None else b"", version)
    laps.lap("digests")
    return StepResult((fwd, bwd), back, laps.seconds)


def backward(holding: StageHolding, key: BatchKey, payload: TensorPayload) -> StepResult:
    """Backward of `key` from the next stage's gradient; may step the optimizer."""
    engine = holding.engine
    laps = Laps()
    version = engine.weights_digest()
    laps.lap("digests")
    gradient = holding.wire.decode(payload)
    laps.lap("serialise")
    grad = engine.backward(key, gradient)
    laps.lap("compute")
    back = holding.wire.encode(grad) if grad is not None else None
    laps.lap("serialise")
    unit = _unit(BACKWARD, payload.data, back.data if back is not None else b"", version)
    laps.lap("digests")
    return StepResult((unit,), back, laps.seconds)


def forget(holding: StageHolding, keys: list[BatchKey]) -> None:
    for key in keys:
        holding.engine.forget(key)


class PendingGradients(RuntimeError):
    """The window cannot close: backward passes wait for the next optimizer step."""


def save_checkpoint(holding: StageHolding, keys: list[BatchKey]) -> bytes:
    """The stage's checkpoint (safetensors) at a step boundary; drops `keys`' forward state."""
    engine = holding.engine
    if engine.pending:
        raise PendingGradients(
            f"{engine.pending} of {engine.config.accumulate} backward passes await the next "
            "optimizer step"
        )
    forget(holding, keys)
    return engine.checkpoint_bytes()
