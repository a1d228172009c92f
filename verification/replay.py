"""Re-running one miner's window of work, unit by unit, as its engine ran it.

The auditor builds a fresh `StageEngine` for the miner's stage from the checkpoint the window
started from (None: the run's seed initialisation) and calls `forward` / `backward` in the order
the miner computed its units (its receipts ordered by sequence number). The engine's state after
a call depends only on the calls before it (AdamW steps every `accumulate` backward passes, no
weight stashing), so the same order on the same device kind and settings reproduces every output
bit for bit; elsewhere the caller compares with `verification.compare` tolerances.

Digests follow the miner (`node/mining/compute.py`): 32-byte blake3 (`p2p.envelope.digest`) of a
tensor's wire bytes: activations and gradients in the run's wire format (`RunSpec.wire_format`,
float32 or int8: decoded to compute on, re-encoded to digest), the rest as raw tensor bytes
(`TensorPayload.from_torch(t).data`). Stage 0's forward input is its token
ids (int64), rebuilt here from the data schedule and never taken from the miner; the last stage's
targets likewise. The last stage's forward output, and so its backward input, is the loss as a
float32 tensor of shape (1,); stage 0's backward output is b"".
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from p2p.envelope import digest
from p2p.tensors import ITEMSIZE, TensorPayload
from p2p.transport import Buffer
from training.data.dataset import Dataset
from training.engine import BatchNotCached, StageEngine
from training.run_spec import RunSpec
from verification.checkpoints import build_engine
from verification.compare import MISSHAPEN, Comparison, compare, from_wire

FORWARD = "forward"
BACKWARD = "backward"
BatchKey = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit of the miner's work, as its receipt claims it, plus the evidence for it."""

    direction: str
    window: int
    batch: int
    inputs: torch.Tensor | Buffer | None
    """The input the miner was sent (wire bytes, in the run's wire format, or a float tensor
    that is encoded first); None where the replay rebuilds it (stage 0's forward, the last
    stage's backward) or where it is missing."""
    output_digest: bytes
    input_digest: bytes
    route: str = ""
    weights_version: str = ""
    """The weights digest the receipt names ("" = not checked)."""
    claimed_output: Buffer | None = None
    """The miner's actual output bytes, when fetched, for a tolerant comparison."""


@dataclass(frozen=True, slots=True)
class UnitResult:
    index: int
    direction: str
    window: int
    batch: int
    replayed: bool
    output_digest: bytes
    """The recomputed output's digest (b"" when not replayed)."""
    match: bool  # recomputed digest == claimed digest
    input_ok: bool | None = None
    """The input used has the claimed input digest (the last stage's backward: the digest of the
    loss its forward claimed, so replay noise in the loss is not mistaken for other data)."""
    weights_ok: bool | None = None
    """The replay's weights digest before the unit equals the receipt's (None: not checked)."""
    comparison: Comparison | None = None
    """For a mismatch with `claimed_output` supplied (and matching its digest)."""
    note: str = ""
    steps: int = 0
    """Optimizer steps the replay took in this window before the unit (0: the start weights)."""


@dataclass(slots=True)
class ReplayResult:
    units: list[UnitResult]
    start_weights_digest: str
    weights_digest: str
    """`StageEngine.weights_digest()` after the last replayed unit."""
    weights: dict[str, torch.Tensor]
    cpu_seconds: float
    complete: bool
    """Every unit was replayed (False: stopped at missing or inconsistent evidence)."""
    stopped: str = ""


def wire(tensor: torch.Tensor) -> Buffer:
    return TensorPayload.from_torch(tensor).data


def replay(
    spec: RunSpec,
    stage: int,
    checkpoint: bytes | None,
    units: Sequence[Unit],
    dataset: Dataset,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ReplayResult:
    """Replay `units` (in the miner's order) from `checkpoint`; see the module docstring.

    `dtype`: float64 computes a reference for calibration (outputs are compared as float32).
    """
    started = time.process_time()
    forwards = sum(u.direction == FORWARD for u in units)
    engine = build_engine(spec, stage, checkpoint, device=device, cache=forwards + 1, dtype=dtype)
    run = _Run(spec, stage, engine, dataset, dtype)
    start_digest = engine.weights_digest()
    results: list[UnitResult] = []
    stopped = ""
    for index, unit in enumerate(units):
        result = run.unit(index, unit)
        results.append(result)
        if not result.replayed:
            stopped = result.note
            break
    for index in range(len(results), len(units)):
        results.append(_no_output(index, units[index], False, "not reached"))
    return ReplayResult(
        units=results,
        start_weights_digest=start_digest,
        weights_digest=engine.weights_digest(),
        weights=engine.state_dict(),
        cpu_seconds=time.process_time() - started,
        complete=not stopped,
        stopped=stopped,
    )


def _no_output(
    index: int,
    unit: Unit,
    replayed: bool,
    note: str,
    input_ok: bool | None = None,
    weights_ok: bool | None = None,
) -> UnitResult:
    return UnitResult(
        index, unit.direction, unit.window, unit.batch, replayed, b"", False,
        input_ok, weights_ok, note=note,
    )  # fmt: skip


class _Run:
    def __init__(
        self, spec: RunSpec, stage: int, engine: StageEngine, dataset: Dataset, dtype: torch.dtype
    ) -> None:
        self.spec = spec
        self.dtype = dtype
        self.engine = engine
        self.dataset = dataset
        self.first = stage == 0
        self.last = stage == spec.n_stages - 1
        self.wire = spec.wire_format()
        self.start_version = engine.weights_version
        self.losses: dict[BatchKey, bytes] = {}
        """The loss digest each last-stage forward claimed: what its backward reads."""

    def unit(self, index: int, unit: Unit) -> UnitResult:
        direction = unit.direction
        if direction not in (FORWARD, BACKWARD):
            raise ValueError(f"unit {index}: direction {direction!r}")
        key: BatchKey = (unit.window, unit.batch, unit.route)
        steps = self.engine.weights_version - self.start_version
        weights_ok = None
        if unit.weights_version:
            weights_ok = unit.weights_version == self.engine.weights_digest()
        x: torch.Tensor | None = None
        input_digest = b""
        if direction == FORWARD and self.first:
            x = self._batch(unit)[0]
            input_digest = digest(wire(x))
        elif not (direction == BACKWARD and self.last):
            if unit.inputs is None:
                return _no_output(index, unit, False, "missing input")
            got = self._input(unit.inputs)
            if got is None or got[1] != unit.input_digest:
                return _no_output(index, unit, False, "input does not match its digest", False)
            x, input_digest = got
        try:
            out, input_digest = self._compute(key, unit, x, input_digest)
        except (BatchNotCached, ValueError) as exc:
            return _no_output(index, unit, True, f"impossible unit: {exc}", None, weights_ok)
        if out.is_floating_point() and out.dtype != torch.float32:
            out = out.to(torch.float32)
        # An activation or gradient crosses in the wire format; the loss and stage 0's b"" not.
        crossing = not self.last if direction == FORWARD else not self.first
        sent = self.wire.encode(out) if crossing else TensorPayload.from_torch(out)
        out_digest = digest(sent.data)
        match = out_digest == unit.output_digest
        comparison, note = None, ""
        if not match and unit.claimed_output is not None:
            if digest(unit.claimed_output) != unit.output_digest:
                note = "claimed output bytes do not match the receipt's digest"
            else:
                ours = self.wire.decode(sent) if crossing else out
                claimed = self._decode(unit.claimed_output, ours, crossing)
                comparison = MISSHAPEN if claimed is None else compare(claimed, ours)
        return UnitResult(
            index,
            direction,
            unit.window,
            unit.batch,
            replayed=True,
            output_digest=out_digest,
            match=match,
            input_ok=input_digest == unit.input_digest,
            weights_ok=weights_ok,
            comparison=comparison,
            note=note,
            steps=steps,
        )

    def _compute(
        self, key: BatchKey, unit: Unit, x: torch.Tensor | None, input_digest: bytes
    ) -> tuple[torch.Tensor, bytes]:
        engine = self.engine
        if x is not None and x.is_floating_point():
            x = x.to(self.dtype)
        if unit.direction == FORWARD:
            assert x is not None
            targets = self._batch(unit)[1] if self.last else None
            out = engine.forward(key, x, targets)
            if self.last:
                out = out.detach().to(torch.float32).reshape(1).cpu()
                self.losses[key] = unit.output_digest
            return out, input_digest
        if self.last:
            loss = self.losses.pop(key, None)
            if loss is None:
                raise BatchNotCached(f"no loss for batch {key!r} on the last stage")
            grad = engine.backward_from_loss(key)
            input_digest = loss
        else:
            assert x is not None
            grad = engine.backward(key, x)
        return (grad if grad is not None else torch.empty(0, dtype=torch.uint8)), input_digest

    def _batch(self, unit: Unit) -> tuple[torch.Tensor, torch.Tensor]:
        return self.spec.batch(self.dataset, unit.window, unit.batch)

    def _input(self, inputs: torch.Tensor | Buffer) -> tuple[torch.Tensor, bytes] | None:
        """The decoded input and the digest of its wire bytes; None if they are misshapen."""
        payload = (
            self.wire.encode(inputs) if isinstance(inputs, torch.Tensor) else self._payload(inputs)
        )
        if payload is None:
            return None
        return self.wire.decode(payload), digest(payload.data)

    def _payload(self, data: Buffer) -> TensorPayload | None:
        wire_format = self.wire
        shape = wire_format.payload_shape
        raw = memoryview(data).cast("B")
        if len(raw) != math.prod(shape) * ITEMSIZE[wire_format.dtype]:
            return None
        return TensorPayload(wire_format.dtype, shape, bytes(raw))

    def _decode(self, data: Buffer, like: torch.Tensor, crossing: bool) -> torch.Tensor | None:
        if not crossing:
            return from_wire(data, like)
        payload = self._payload(data)
        return None if payload is None else self.wire.decode(payload)
