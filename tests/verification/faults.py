"""The cheating miners for the replay tests: `node.mining.faults` (what `--fault KIND` runs),
plus a pass-through middle stage, a lazy variant only a test needs.

Every cheater signs receipts for what it actually sends (a receipt naming bytes it did not send
would be refuted by its neighbour's receipt at once); it lies about the computation behind them.
"""

from collections.abc import Callable

from node.mining import faults
from node.mining.compute import BACKWARD, FORWARD, StepResult
from node.mining.faults import Behaviour, FreeRider
from node.mining.state import BatchKey, StageHolding
from p2p.tensors import TensorPayload
from tests.verification.kit import record

__all__ = ["FAULTS", "FreeRider", "PassThrough"]


class PassThrough(Behaviour):
    """A middle stage that sends on what it received."""

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        assert p is not None and not h.is_first and not h.is_last
        version = h.engine.weights_digest()
        return StepResult((record(FORWARD, bytes(p.data), bytes(p.data), version),), p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        version = h.engine.weights_digest()
        return StepResult((record(BACKWARD, bytes(p.data), bytes(p.data), version),), p)


def _fault(kind: str) -> Callable[[], Behaviour]:
    def make() -> Behaviour:
        behaviour = faults.make(kind)
        assert behaviour is not None
        return behaviour

    return make


FAULTS: dict[str, Callable[[], Behaviour]] = {
    **{kind: _fault(kind) for kind in ("lazy", "random", "stale", "copycat", "nan", "free-rider")},
    "passthrough": PassThrough,
}
