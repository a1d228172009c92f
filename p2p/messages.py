"""Typed messages: each class has a fixed type id, version and protocol id, and one codec.

A message's scalar fields travel in the signed head's `meta` map; a `tensor` field travels as the
raw body with its dtype and shape in the head. `decode` checks every field's type and raises
MalformedMessage for anything else. Class attributes carry the per-type caps that the endpoint
enforces before reading a body (size, dtypes, rank, rate per peer).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from p2p.body_codec import inflate, raw_size
from p2p.envelope import Header, MalformedMessage
from p2p.tensors import FLOAT_DTYPES, TensorPayload
from p2p.transport import Buffer

M = TypeVar("M", bound="Message")
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    type_id: ClassVar[int]
    version: ClassVar[int] = 1
    protocol: ClassVar[str] = ""  # requests only; replies travel back on the request's stream
    dtypes: ClassVar[frozenset[str]] = frozenset()
    max_rank: ClassVar[int] = 0
    max_body: ClassVar[int] = 0
    rate_per_s: ClassVar[float] = 50.0
    burst: ClassVar[int] = 100
    deflate_dtypes: ClassVar[frozenset[str]] = frozenset()
    """Dtypes whose bodies may arrive deflated (`p2p.body_codec`); the sender chooses."""
    bulk: ClassVar[bool] = False
    """The request (and so its reply) takes the bulk lane whatever its size: a pull whose reply
    is large, or a high-rate call. libp2p's stream I/O crosses the trio portal, which costs each
    message milliseconds and stalls large replies under load; the bulk lane carries the same
    signed envelopes."""

    def meta(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tensor"
        }

    @property
    def payload(self) -> TensorPayload | None:
        return getattr(self, "tensor", None)

    @classmethod
    def decode(cls: type[M], header: Header, body: Buffer) -> M:
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(header.meta) - names
        if extra:
            raise MalformedMessage(f"{cls.__name__}: unknown fields {sorted(extra)}")
        for name in names:
            if name == "tensor":
                if header.dtype is None or header.shape is None:
                    raise MalformedMessage(f"{cls.__name__}: tensor payload missing")
                if header.encoding is not None:  # replies too: never past the class's limits
                    if header.dtype not in cls.deflate_dtypes:
                        raise MalformedMessage(f"{cls.__name__}: {header.dtype} not deflated")
                    if raw_size(header.dtype, header.shape) > cls.max_body:
                        raise MalformedMessage(f"{cls.__name__}: inflates past {cls.max_body}")
                    body = inflate(header.dtype, header.shape, body, header.encoding)
                kwargs[name] = TensorPayload(header.dtype, header.shape, body)
            elif name in header.meta:
                kwargs[name] = _check(cls.__name__, name, header.meta[name], hints[name])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise MalformedMessage(f"{cls.__name__}: {exc}") from None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A message class's field types, resolved once (resolving them costs more than a decode)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _check(cls: str, name: str, value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        if isinstance(value, list) and all(isinstance(v, args[0]) for v in value):
            return value
    elif origin is dict:
        if isinstance(value, dict):
            return value
    elif origin in (typing.Union, type(int | None)):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(cls, name, value, arg)
            except MalformedMessage:
                continue
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    raise MalformedMessage(f"{cls}.{name}: {type(value).__name__} is not {hint}")


# Replies -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Message):
    type_id = 1
    re: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal(Message):
    type_id = 2
    re: int = 0
    reason: str
    detail: str = ""


# Control -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """Who a peer is: roles, declared capacity, hotkey binding and bulk-lane address."""

    type_id = 10
    protocol = "/tessera/hello/1"
    rate_per_s = 1.0
    burst = 5
    roles: list[str] = field(default_factory=list)
    capacity: float = 0.0
    binding: dict[str, Any] | None = None
    bulk_addr: str = ""
    agent: str = ""
    session_key: str = ""
    """This process's X25519 public key (hex) for the pair's session keys (`p2p.session_keys`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(Message):
    """The answer to Hello: the responder's own Hello fields."""

    type_id = 11
    re: int = 0
    roles: list[str] = field(default_factory=list)
    capacity: float = 0.0
    binding: dict[str, Any] | None = None
    bulk_addr: str = ""
    agent: str = ""
    session_key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign(Message):
    """Orchestrator → miner: the run's spec and the stage to hold (-1: stand by).

    `weights` names a stage checkpoint blob (sha256 hex, safetensors) the sender serves by
    BlobRequest; empty means: initialise the stage from the spec's seed.
    """

    type_id = 13
    protocol = "/tessera/assign/1"
    rate_per_s = 5.0
    burst = 20
    window: int
    stage: int
    spec: dict[str, Any]
    weights: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Message):
    type_id = 12
    protocol = "/tessera/heartbeat/1"
    rate_per_s = 5.0
    burst = 10
    window: int = 0
    load: float = 0.0


# Work ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Work(Message):
    """Orchestrator → stage-0 miner: start batch `batch` of `window` on route `route`.

    `miners[s]` is the miner of stage s. The signed head of this message is the route's
    *ticket*: activations and gradients carry it so each miner checks the route came from the
    orchestrator and names it for its stage. `ticket` is that signed head of this same Work
    (made with `ticket=b""`), since a handler sees the decoded request, not its head.
    """

    type_id = 22
    protocol = "/tessera/work/1"
    rate_per_s = 200.0
    burst = 400
    window: int
    batch: int
    route: str
    miners: list[str]
    ticket: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Activation(Message):
    """Stage `stage`'s input for one batch of one route (sent by stage - 1)."""

    type_id = 20
    protocol = "/tessera/activation/1"
    dtypes = FLOAT_DTYPES | {"int8"}  # int8: codes and their scales (`training.wire`)
    deflate_dtypes = frozenset({"int8"})
    max_rank = 4
    max_body = 256 * MiB
    rate_per_s = 200.0
    burst = 400
    window: int
    batch: int
    stage: int
    route: str = ""
    ticket: bytes = b""
    tensor: TensorPayload


@dataclass(frozen=True, slots=True, kw_only=True)
class Gradient(Activation):
    """The gradient w.r.t. stage `stage`'s output (sent back by stage + 1)."""

    type_id = 21
    protocol = "/tessera/gradient/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowClose(Message):
    """Orchestrator → miner: the window's batches are done; report the stage's weights."""

    type_id = 23
    protocol = "/tessera/window/1"
    rate_per_s = 5.0
    burst = 20
    window: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsReport(Message):
    """Reply to WindowClose: the stage checkpoint's blob (sha256 hex), served by BlobRequest."""

    type_id = 24
    re: int = 0
    window: int
    stage: int
    digest: str
    weights_version: int
    backward_passes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt(Message):
    """A miner's signed claim of one unit of work (the envelope's signature signs it)."""

    type_id = 30
    protocol = "/tessera/receipt/1"
    rate_per_s = 500.0
    burst = 1000
    window: int
    batch: int
    stage: int
    direction: str
    input_digest: bytes
    output_digest: bytes
    weights_version: str
    route: str = ""
    loss: float | None = None
    """The last stage's training loss of the batch (forward receipts only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptBatch(Message):
    """Several receipts in one request; each item is a Receipt's own signed head (no body)."""

    type_id = 31
    protocol = "/tessera/receipts/1"
    rate_per_s = 50.0
    burst = 100
    receipts: list[bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobRequest(Message):
    type_id = 40
    protocol = "/tessera/blob/1"
    bulk = True
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobReply(Message):
    """A blob's bytes as a uint8 payload; the envelope's digest proves the content."""

    type_id = 41
    dtypes = frozenset({"uint8"})
    max_rank = 1
    max_body = 1024 * MiB
    re: int = 0
    tensor: TensorPayload
