"""The cheating miners for the replay tests: `node.mining.faults` (what `--fault KIND` runs),
plus a pass-through middle stage, a lazy variant only a test needs.

Every cheater signs receipts for what it actually sends (a receipt naming bytes it did not send
would be refuted by its neighbour's receipt at once); it lies about the computation behind them.
"""

from collections.abc import Callable

import torch

from node.mining import faults
from node.mining.compute import BACKWARD, FORWARD, StepResult, UnitRecord
from node.mining.faults import Behaviour, FreeRider
from node.mining.state import BatchKey, StageHolding
from p2p.tensors import TensorPayload
from tests.verification.kit import record

__all__ = ["FAULTS", "FreeRider", "Noisy", "PassThrough"]


class PassThrough(Behaviour):
    """A middle stage that sends on what it received."""

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        assert p is not None and not h.is_first and not h.is_last
        version = h.engine.weights_digest()
        return StepResult((record(FORWARD, bytes(p.data), bytes(p.data), version),), p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        version = h.engine.weights_digest()
        return StepResult((record(BACKWARD, bytes(p.data), bytes(p.data), version),), p)


class Noisy(Behaviour):
    """Computes honestly, then adds Gaussian noise of relative L2 norm `rel` to all it sends."""

    def __init__(self, rel: float = 1e-4) -> None:
        self.rel = rel
        self.gen = torch.Generator().manual_seed(11)

    def _perturb(self, result: StepResult) -> StepResult:
        units: list[UnitRecord] = []
        for u in result.units:
            out = bytes(u.outputs)
            if out:
                t = torch.frombuffer(bytearray(out), dtype=torch.float32).clone()
                n = torch.randn(t.shape, generator=self.gen)
                out = (t + n * (self.rel * t.norm() / n.norm())).numpy().tobytes()
            inputs = bytes(units[-1].outputs) if units else bytes(u.inputs)
            units.append(record(u.direction, inputs, out, u.weights_version))
        send = result.send
        if send is not None:
            send = TensorPayload("float32", send.shape, units[-1].outputs)
        return StepResult(tuple(units), send)

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        return self._perturb(super().forward(h, key, p))

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        return self._perturb(super().backward(h, key, p))


def _fault(kind: str) -> Callable[[], Behaviour]:
    def make() -> Behaviour:
        behaviour = faults.make(kind)
        assert behaviour is not None
        return behaviour

    return make


FAULTS: dict[str, Callable[[], Behaviour]] = {
    **{
        kind: _fault(kind)
        for kind in ("lazy", "random", "stale", "copycat", "nan", "free-rider", "bf16")
    },
    "passthrough": PassThrough,
}
