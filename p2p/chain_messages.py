"""The devnet chain's messages: extrinsics signed by the hotkey they act for, and queries.

An extrinsic's `signature` is the hotkey's (sr25519) over `extrinsic_payload`: the domain, the
subnet, the call, the hotkey's nonce and a digest of the arguments, so it cannot be replayed
(the chain keeps each hotkey's last nonce), moved to another subnet or given other arguments.
The envelope around it is still signed by the sending node's key as every message is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import blake3
import msgpack

from p2p.envelope import MalformedMessage
from p2p.messages import Message
from p2p.tensors import TensorPayload

_DOMAIN = b"tessera-extrinsic/1"
CALLS = ("register", "serve", "set_weights", "commit_weights", "reveal_weights")
VIEWS = ("block", "metagraph", "weights", "hyperparams", "epochs", "totals")


def extrinsic_payload(
    netuid: int, call: str, args: dict[str, Any], hotkey: str, nonce: int
) -> bytes:
    """What the hotkey signs for one extrinsic."""
    body = msgpack.packb([netuid, call, hotkey, nonce, args], use_bin_type=True)
    return _DOMAIN + b"|" + blake3.blake3(body).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainCall(Message):
    """Any node → the chain node: one extrinsic (`call` in CALLS) with its arguments."""

    type_id = 70
    protocol = "/tessera/chain/call/1"
    bulk = True
    rate_per_s = 2000.0
    burst = 4000
    netuid: int
    call: str
    args: dict[str, Any] = field(default_factory=dict)
    hotkey: str
    nonce: int
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainResult(Message):
    """Reply to ChainCall: included (`ok`) at `block`, or the chain's error (`fault`, `detail`,
    a `node.chain.records.ChainFault` value). `value` is the uid a registration got."""

    type_id = 71
    re: int = 0
    ok: bool
    block: int
    fault: str = ""
    detail: str = ""
    value: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainQuery(Message):
    """Any node → the chain node: a view (`what` in VIEWS) of a subnet's state."""

    type_id = 72
    protocol = "/tessera/chain/query/1"
    bulk = True
    rate_per_s = 200.0
    burst = 400
    netuid: int
    what: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainView(Message):
    """Reply to ChainQuery: the view as msgpack in the body (a metagraph outgrows a head)."""

    type_id = 73
    dtypes = frozenset({"uint8"})
    max_rank = 1
    max_body = 64 * 1024 * 1024
    re: int = 0
    block: int
    tensor: TensorPayload

    @classmethod
    def of(cls, block: int, data: Any) -> ChainView:
        raw = msgpack.packb(data, use_bin_type=True)
        return cls(block=block, tensor=TensorPayload("uint8", (len(raw),), raw))

    def data(self) -> Any:
        """The view; raises MalformedMessage when the body is not msgpack."""
        try:
            return msgpack.unpackb(bytes(self.tensor.data), raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise MalformedMessage(f"ChainView body: {exc}") from None
