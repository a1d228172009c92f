"""The cheating miners of issue 5, as pipeline behaviours (see kit.py): what each sends and signs.

Every cheater signs receipts for what it actually sends (a receipt naming bytes it did not send
would be refuted by its neighbour's receipt at once); it lies about the computation behind them.
"""

import math
from collections.abc import Callable

import torch

from node.mining.compute import BACKWARD, FORWARD, StepResult, UnitRecord
from node.mining.state import BatchKey, StageHolding
from p2p.tensors import TensorPayload
from tests.verification.kit import Honest, record


def _loss_bytes(value: float) -> bytes:
    return torch.tensor([value], dtype=torch.float32).numpy().tobytes()


class Fabricator(Honest):
    """Sends made-up tensors of the right shapes instead of computing."""

    def make(self, like: torch.Tensor, key: BatchKey, direction: str) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        x = p or ids(h, key)
        version = h.engine.weights_digest()
        act = torch.empty(h.act_shape)
        if not h.is_last:
            out = TensorPayload.from_torch(self.make(act, key, FORWARD))
            return StepResult((record(FORWARD, bytes(x.data), bytes(out.data), version),), out)
        loss = _loss_bytes(float(self.make(torch.full((1,), 6.0), key, FORWARD)[0]))
        grad = TensorPayload.from_torch(self.make(act, key, BACKWARD))
        units = (
            record(FORWARD, bytes(x.data), loss, version),
            record(BACKWARD, loss, bytes(grad.data), version),
        )
        return StepResult(units, grad)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        version = h.engine.weights_digest()
        if h.is_first:
            return StepResult((record(BACKWARD, bytes(p.data), b"", version),), None)
        grad = TensorPayload.from_torch(self.make(torch.empty(h.act_shape), key, BACKWARD))
        return StepResult((record(BACKWARD, bytes(p.data), bytes(grad.data), version),), grad)


class Lazy(Fabricator):
    """Zeros instead of compute."""

    def make(self, like: torch.Tensor, key: BatchKey, direction: str) -> torch.Tensor:
        return torch.zeros_like(like)


class PassThrough(Honest):
    """A middle stage that sends on what it received."""

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        assert p is not None and not h.is_first and not h.is_last
        version = h.engine.weights_digest()
        return StepResult((record(FORWARD, bytes(p.data), bytes(p.data), version),), p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        version = h.engine.weights_digest()
        return StepResult((record(BACKWARD, bytes(p.data), bytes(p.data), version),), p)


class Random(Fabricator):
    """Random tensors of the right shape (and a plausible loss)."""

    def __init__(self) -> None:
        self.g = torch.Generator().manual_seed(7)

    def make(self, like: torch.Tensor, key: BatchKey, direction: str) -> torch.Tensor:
        if like.numel() == 1:
            return like + torch.rand(1, generator=self.g)
        scale = 1.0 if direction == FORWARD else 1e-3
        return torch.randn(like.shape, generator=self.g) * scale


class Stale(Honest):
    """Computes, but never applies its optimizer steps (its engine's learning rate is 0)."""

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        h.engine.config.lr = 0.0
        return super().forward(h, key, p)


class Copycat(Honest):
    """Computes its first unit of each direction, then re-sends those outputs."""

    def __init__(self) -> None:
        self.kept: dict[str, StepResult] = {}

    def _run(
        self, direction: str, h: StageHolding, x: bytes, compute: Callable[[], StepResult]
    ) -> StepResult:
        kept = self.kept.get(direction)
        if kept is None:
            self.kept[direction] = kept = compute()
            return kept
        version = h.engine.weights_digest()
        units: list[UnitRecord] = []
        for u in kept.units:  # the last stage's backward reads the loss it claimed
            inputs = bytes(units[-1].outputs) if units else x
            units.append(record(u.direction, inputs, bytes(u.outputs), version))
        return StepResult(tuple(units), kept.send)

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        x = bytes((p or ids(h, key)).data)
        return self._run(FORWARD, h, x, lambda: super(Copycat, self).forward(h, key, p))

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        return self._run(
            BACKWARD, h, bytes(p.data), lambda: super(Copycat, self).backward(h, key, p)
        )


def ids(h: StageHolding, key: BatchKey) -> TensorPayload:
    """Stage 0's input: the scheduled batch's token ids."""
    spec = h.spec
    x, _ = h.dataset.batch(
        spec.data_seed, key[0], key[1], batch_size=spec.batch_size, seq_len=spec.seq_len
    )
    return TensorPayload.from_torch(x)


class NaN(Honest):
    """Computes, then puts a NaN into everything it sends."""

    def _poison(self, result: StepResult) -> StepResult:
        send = result.send
        if send is not None:
            t = send.to_torch().clone()
            t.view(-1)[0] = math.nan
            send = TensorPayload.from_torch(t)
        units: list[UnitRecord] = []
        for u in result.units:
            out = bytes(u.outputs)
            if out:
                t = torch.frombuffer(bytearray(out), dtype=torch.float32).clone()
                t[0] = math.nan
                out = t.numpy().tobytes()
            # the last stage's backward reads the loss it claimed
            inputs = bytes(units[-1].outputs) if units else bytes(u.inputs)
            units.append(record(u.direction, inputs, out, u.weights_version))
        return StepResult(tuple(units), send)

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        return self._poison(super().forward(h, key, p))

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        return self._poison(super().backward(h, key, p))


class FreeRider(Honest):
    """Forwards, never runs a backward pass (and sends no gradient)."""

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        assert not h.is_last, "the last stage's forward includes its backward"
        return super().forward(h, key, p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        return StepResult((), None)


FAULTS: dict[str, type[Honest]] = {
    "lazy": Lazy,
    "passthrough": PassThrough,
    "random": Random,
    "stale": Stale,
    "copycat": Copycat,
    "nan": NaN,
    "free-rider": FreeRider,
}
