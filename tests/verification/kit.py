"""A pipeline of miners in one process, built on the miner's own compute (node.mining.compute).

Each stage's behaviour (`Honest`, or a cheater from faults.py) turns an incoming message into
the units it records (its receipts) and what it sends on; `Honest` is exactly the miner's code,
the cheaters fabricate their window the way each fault kind would. Batches flow two in flight
(forward of b+1 before backward of b), so some batches are forwarded before an optimizer step
and backpropagated after it. A route that a stage breaks (sends nothing) is forgotten by the
stages still holding it, as a lease expiry does.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from node.mining import compute
from node.mining.compute import BACKWARD, FORWARD, UnitRecord
from node.mining.faults import Behaviour
from node.mining.state import BatchKey, StageHolding
from p2p.envelope import digest
from p2p.tensors import TensorPayload
from training.data.dataset import Dataset
from training.engine import StageEngine
from training.run_spec import RunSpec
from training.stages import StageModule, split_layers
from verification.replay import Unit

SPEC = RunSpec(
    model="tiny", n_stages=3, vocab_size=512, batch_size=2, seq_len=16,
    batches_per_window=4, accumulate=2, lr=1e-3,
)  # fmt: skip


@dataclass
class Recorded:
    key: BatchKey
    unit: UnitRecord


@dataclass
class WindowRun:
    window: int
    starts: list[bytes | None]
    units: list[list[Recorded]]
    ends: list[bytes | None]
    """Window-end checkpoints (None where the stage could not save: gradients pending)."""
    holdings: list[StageHolding] = field(default_factory=list)

    def audit_units(self, stage: int, *, claims: bool = False) -> list[Unit]:
        """The stage's units as a validator assembles them (inputs from the neighbours)."""
        last = len(self.units) - 1
        out = []
        for rec in self.units[stage]:
            u = rec.unit
            rebuilt = (stage == 0 and u.direction == FORWARD) or (
                stage == last and u.direction == BACKWARD
            )
            out.append(
                Unit(
                    u.direction, rec.key[0], rec.key[1], None if rebuilt else bytes(u.inputs),
                    u.output_digest, u.input_digest, rec.key[2], u.weights_version,
                    bytes(u.outputs) if claims else None,
                )
            )  # fmt: skip
        return out


def record(direction: str, inputs: bytes, outputs: bytes, version: str) -> UnitRecord:
    return UnitRecord(direction, inputs, outputs, digest(inputs), digest(outputs), version)


Honest = Behaviour
"""The miner's own compute (`node.mining.compute`), which each fault overrides."""


def holding(spec: RunSpec, dataset: Dataset, stage: int, start: bytes | None) -> StageHolding:
    """A miner's stage, built as node.mining.assignment builds it (not with the auditor's code)."""
    model = spec.model_config()
    stage_spec = split_layers(model.n_layers, spec.n_stages)[stage]
    module = StageModule(model, stage_spec, seed=spec.seed if start is None else None)
    engine = StageEngine(module, spec.engine_config(device="cpu", cache_size=8))
    if start is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "assign.safetensors"
            path.write_bytes(start)
            engine.load(path)
    return StageHolding(spec, spec.to_record(), stage, "", engine, dataset)


def run_window(
    spec: RunSpec,
    dataset: Dataset,
    window: int,
    starts: list[bytes | None],
    behaviours: dict[int, Honest] | None = None,
    holdings: list[StageHolding] | None = None,
) -> WindowRun:
    """One window through the pipeline; `holdings` continue from a previous window."""
    beh = [(behaviours or {}).get(s, Honest()) for s in range(spec.n_stages)]
    hs = holdings or [holding(spec, dataset, s, starts[s]) for s in range(spec.n_stages)]
    units: list[list[Recorded]] = [[] for _ in hs]
    grads: dict[BatchKey, TensorPayload | None] = {}
    last = spec.n_stages - 1

    def forward(key: BatchKey) -> None:
        payload: TensorPayload | None = None
        for s in range(spec.n_stages):
            result = beh[s].forward(hs[s], key, payload)
            units[s].extend(Recorded(key, u) for u in result.units)
            payload = result.send
            if payload is None and s < last:
                for below in range(s):
                    compute.forget(hs[below], [key])
                return
        grads[key] = payload

    def backward(key: BatchKey) -> None:
        payload = grads.pop(key, None)
        for s in range(last - 1, -1, -1):
            if payload is None:
                for below in range(s + 1):
                    compute.forget(hs[below], [key])
                return
            result = beh[s].backward(hs[s], key, payload)
            units[s].extend(Recorded(key, u) for u in result.units)
            payload = result.send

    keys = [(window, b, f"r{window}.{b}") for b in range(spec.batches_per_window)]
    for i, key in enumerate(keys):
        forward(key)
        if i:
            backward(keys[i - 1])
    backward(keys[-1])
    ends: list[bytes | None] = []
    for h in hs:
        try:
            ends.append(compute.save_checkpoint(h, []))
        except compute.PendingGradients:
            ends.append(None)
    return WindowRun(window, list(starts), units, ends, hs)


def floats(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.float32).clone()
