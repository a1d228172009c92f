"""Cheating miners for tests and devnets: `miner.fault` (`tessera node --fault KIND`).

Explicit flags only; the default (no fault) never reaches this module, so an honest miner runs
`node.mining.compute` exactly as before. Each fault replaces the compute of a unit at the
compute/send boundary (on the compute thread) and signs receipts for what it actually sends,
since a receipt naming bytes it did not send would be refuted by its neighbour's receipt at once;
it lies about the computation behind them:

  lazy        zeros of the right shape instead of compute (the last stage: a made-up loss)
  random      random tensors of the right shape, and a random step of its weights (of the
              learning rate's size) where an optimizer step would be
  stale       computes, but never steps its optimizer (learning rate 0)
  copycat     re-sends the outputs of its first unit of each direction (it runs every forward,
              for the forward state, but only the first backward)
  nan         computes, then puts a NaN in everything it sends (its neighbour refuses it)
  late        sleeps `LATE_S` before each unit, past its lease, then computes honestly
  free-rider  forwards, never runs a backward pass nor sends a gradient
  bf16        computes honestly, but under bf16 autocast (reduced precision), sending float32
  bad-merge   computes honestly, but as an owner in its stage's merge serves a wrong reduction
              (`node.merging`; the compute here is the honest one)
  slow        not a cheat: computes honestly at half speed (sleeps as long as each unit took),
              for benches of what a slow honest miner earns

`KIND:F` (F in (0, 1], for the unit faults lazy, random, nan and free-rider) cheats in one
window out of round(1/F) (windows w with w % period == period - 1) and is honest in the others:
`lazy:0.25` is lazy in windows 3, 7, 11, …
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from node.mining import compute
from node.mining.compute import BACKWARD, FORWARD, StepResult, UnitRecord
from node.mining.state import BatchKey, StageHolding
from p2p.envelope import digest
from p2p.tensors import TensorPayload

FAULTS = (
    "lazy", "random", "stale", "copycat", "nan", "late", "free-rider", "bad-merge", "slow", "bf16",
)  # fmt: skip
MERGE_FAULTS = frozenset({"bad-merge"})
"""Faults of the merge, not of the compute: `make` gives honest compute for them."""
INTERMITTENT = frozenset({"lazy", "random", "nan", "free-rider", "bf16"})
"""Faults that can cheat in some windows only (`KIND:F`)."""
LATE_S = 30.0


def _record(direction: str, inputs: bytes, outputs: bytes, version: str) -> UnitRecord:
    return UnitRecord(direction, inputs, outputs, digest(inputs), digest(outputs), version)


def _ids(h: StageHolding, key: BatchKey) -> TensorPayload:
    spec = h.spec
    x, _ = spec.batch(h.dataset, key[0], key[1])
    return TensorPayload.from_torch(x)


def _loss_bytes(value: float) -> bytes:
    return torch.tensor([value], dtype=torch.float32).numpy().tobytes()


class Behaviour:
    """Honest compute; the faults override it."""

    kind = ""

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        return compute.forward(h, key, p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        return compute.backward(h, key, p)


class _Fabricator(Behaviour):
    """Sends made-up tensors of the right shapes instead of computing."""

    def make(self, like: torch.Tensor, direction: str) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        x = p if p is not None else _ids(h, key)
        version = h.engine.weights_digest()
        act = torch.empty(h.act_shape)
        if not h.is_last:
            out = h.wire.encode(self.make(act, FORWARD))
            return StepResult((_record(FORWARD, bytes(x.data), bytes(out.data), version),), out)
        loss = _loss_bytes(float(self.make(torch.full((1,), 6.0), FORWARD)[0]))
        grad = h.wire.encode(self.make(act, BACKWARD))
        units = (
            _record(FORWARD, bytes(x.data), loss, version),
            _record(BACKWARD, loss, bytes(grad.data), version),
        )
        return StepResult(units, grad)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        version = h.engine.weights_digest()
        if h.is_first:
            return StepResult((_record(BACKWARD, bytes(p.data), b"", version),), None)
        grad = h.wire.encode(self.make(torch.empty(h.act_shape), BACKWARD))
        return StepResult((_record(BACKWARD, bytes(p.data), bytes(grad.data), version),), grad)


class Lazy(_Fabricator):
    kind = "lazy"

    def make(self, like: torch.Tensor, direction: str) -> torch.Tensor:
        return torch.zeros_like(like) if like.numel() > 1 else like


class Random(_Fabricator):
    kind = "random"

    def __init__(self) -> None:
        self.g = torch.Generator().manual_seed(7)
        self.units = 0

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        if h.is_last:  # the last stage's forward makes up its backward too
            self._unit(h)
        return super().forward(h, key, p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        self._unit(h)
        return super().backward(h, key, p)

    def _unit(self, h: StageHolding) -> None:
        self.units += 1
        if self.units % h.spec.accumulate == 0:  # a "step" in a random direction
            weights = h.engine.state_dict()
            g = self.g
            noise = {k: torch.randn(v.shape, generator=g) * h.spec.lr for k, v in weights.items()}
            h.engine.load_state_dict({k: v + noise[k] for k, v in weights.items()})

    def make(self, like: torch.Tensor, direction: str) -> torch.Tensor:
        if like.numel() == 1:
            return like + torch.rand(1, generator=self.g)
        scale = 1.0 if direction == FORWARD else 1e-3
        return torch.randn(like.shape, generator=self.g) * scale


class Stale(Behaviour):
    kind = "stale"

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        h.engine.config.lr = 0.0
        return super().forward(h, key, p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        h.engine.config.lr = 0.0
        return super().backward(h, key, p)


class Copycat(Behaviour):
    kind = "copycat"

    def __init__(self) -> None:
        self.kept: dict[str, StepResult] = {}

    def _run(
        self,
        direction: str,
        h: StageHolding,
        x: bytes,
        run: Callable[[], StepResult],
        *,
        always: bool = False,
    ) -> StepResult:
        kept = self.kept.get(direction)
        if kept is None or always:
            result = run()
            if kept is None:
                self.kept[direction] = kept = result
                return kept
        version = h.engine.weights_digest()
        units: list[UnitRecord] = []
        for u in kept.units:  # the last stage's backward reads the loss it claimed
            inputs = bytes(units[-1].outputs) if units else x
            units.append(_record(u.direction, inputs, bytes(u.outputs), version))
        return StepResult(tuple(units), kept.send)

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        x = bytes((p if p is not None else _ids(h, key)).data)
        # Every forward runs, so whichever batch's backward comes first finds its forward state.
        return self._run(FORWARD, h, x, lambda: compute.forward(h, key, p), always=True)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        if BACKWARD in self.kept:
            compute.forget(h, [key])
        return self._run(BACKWARD, h, bytes(p.data), lambda: compute.backward(h, key, p))


class NaN(Behaviour):
    kind = "nan"

    def _poison(self, h: StageHolding, result: StepResult) -> StepResult:
        send, sent = result.send, b""
        if send is not None:
            sent = bytes(send.data)
            t = h.wire.decode(send).clone()
            t.view(-1)[0] = math.nan  # int8: the channel's scale becomes NaN
            send = h.wire.encode(t)
        units: list[UnitRecord] = []
        for u in result.units:
            out = bytes(u.outputs)
            if send is not None and out == sent:
                out = bytes(send.data)
            elif out:  # the last stage's loss
                t = torch.frombuffer(bytearray(out), dtype=torch.float32).clone()
                t[0] = math.nan
                out = t.numpy().tobytes()
            inputs = bytes(units[-1].outputs) if units else bytes(u.inputs)
            units.append(_record(u.direction, inputs, out, u.weights_version))
        return StepResult(tuple(units), send)

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        return self._poison(h, super().forward(h, key, p))

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        return self._poison(h, super().backward(h, key, p))


class Bf16(Behaviour):
    """Honest compute under `torch.autocast(bfloat16)`: matmuls in bf16 (about 3 significant
    digits), what it sends stays float32 (the residual stream, input gradients and the loss)."""

    kind = "bf16"

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        with torch.autocast(device_type=h.engine.device.type, dtype=torch.bfloat16):
            return super().forward(h, key, p)  # the last stage's backward runs in here too

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        # under autocast too: the engine recomputes the forward when its weights stepped since
        with torch.autocast(device_type=h.engine.device.type, dtype=torch.bfloat16):
            return super().backward(h, key, p)


class Late(Behaviour):
    kind = "late"

    def __init__(self, delay_s: float = LATE_S) -> None:
        self.delay_s = delay_s

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        time.sleep(self.delay_s)
        return super().forward(h, key, p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        time.sleep(self.delay_s)
        return super().backward(h, key, p)


class Slow(Behaviour):
    kind = "slow"

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        started = time.perf_counter()
        result = super().forward(h, key, p)
        time.sleep(time.perf_counter() - started)
        return result

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        started = time.perf_counter()
        result = super().backward(h, key, p)
        time.sleep(time.perf_counter() - started)
        return result


class FreeRider(Behaviour):
    kind = "free-rider"

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        compute.forget(h, [key])
        return StepResult((), None)


_KINDS: dict[str, Callable[[], Behaviour]] = {
    "lazy": Lazy,
    "random": Random,
    "stale": Stale,
    "copycat": Copycat,
    "nan": NaN,
    "late": Late,
    "free-rider": FreeRider,
    "slow": Slow,
    "bf16": Bf16,
}


class Intermittent(Behaviour):
    """`inner` in one window out of `period`, honest compute in the others."""

    def __init__(self, inner: Behaviour, period: int) -> None:
        self.inner, self.period = inner, period
        self.kind = f"{inner.kind}:{1 / period:g}"

    def _now(self, key: BatchKey) -> Behaviour:
        return self.inner if key[0] % self.period == self.period - 1 else _HONEST

    def forward(self, h: StageHolding, key: BatchKey, p: TensorPayload | None) -> StepResult:
        return self._now(key).forward(h, key, p)

    def backward(self, h: StageHolding, key: BatchKey, p: TensorPayload) -> StepResult:
        return self._now(key).backward(h, key, p)


_HONEST = Behaviour()


def check(kind: str) -> None:
    """Raise ValueError unless `kind` names a fault (or is "" for none)."""
    make(kind)


def make(kind: str) -> Behaviour | None:
    """The behaviour of `kind` ("" = honest: None, the pipeline calls compute directly)."""
    if not kind or kind in MERGE_FAULTS:
        return None
    base, _, share = kind.partition(":")
    if base not in _KINDS:
        raise ValueError(f"unknown miner fault {kind!r} (faults: {', '.join(FAULTS)})")
    if not share:
        return _KINDS[base]()
    try:
        fraction = float(share)
    except ValueError:
        fraction = math.nan
    if base not in INTERMITTENT or not 0 < fraction <= 1:
        raise ValueError(
            f"miner fault {kind!r}: KIND:F takes F in (0, 1] and KIND in "
            f"{', '.join(sorted(INTERMITTENT))}"
        )
    return Intermittent(_KINDS[base](), max(1, round(1 / fraction)))
