"""The interface between the protocol core (no I/O) and a transport that moves frames.

A frame is an encoded, signed envelope head plus a raw body (tensor bytes, never copied into the
head). The transport knows nothing of envelopes: it frames, chunks, caps and delivers. On the
receiving side it first shows the handler the head and the announced body length, so a frame the
core will refuse (bad signature, unknown sender, too large, rate limited, replay) is answered
before its body is read; then it reads the body and hands over the whole frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from p2p.errors import P2PError

MAX_HEAD_BYTES = 64 * 1024
Buffer = bytes | bytearray | memoryview


def nbytes(body: Buffer) -> int:
    """Size in bytes; a typed memoryview's len() counts items, not bytes."""
    return body.nbytes if isinstance(body, memoryview) else len(body)


class TransportError(P2PError):
    """A frame could not be delivered: peer unreachable, timeout, reset or over a transport cap."""


@dataclass(frozen=True, slots=True)
class Frame:
    head: bytes
    body: Buffer = b""


class FrameHandler(Protocol):
    """What the protocol core offers a transport for one protocol id."""

    def check_head(self, peer: str | None, head: bytes, body_len: int) -> Frame | None:
        """A refusal frame to answer with (the body is then not read), or None to go on.

        `peer` is the remote peer id when the channel authenticated it (libp2p Noise), else None.
        """
        ...

    async def handle(self, peer: str | None, frame: Frame) -> Frame:
        """The reply frame to a request whose head passed `check_head`."""
        ...


class Transport(Protocol):
    @property
    def local_peer_id(self) -> str: ...

    def serve(self, protocol: str, handler: FrameHandler) -> None:
        """Route requests for `protocol` (e.g. "/tessera/activation/1") to `handler`."""
        ...

    async def request(
        self, peer_id: str, protocol: str, frame: Frame, *, timeout: float, bulk: bool = False
    ) -> Frame:
        """Send `frame` to `peer_id` and return its reply; raises TransportError. `bulk` asks
        for the transport's bulk lane whatever the frame's size (the reply will be large)."""
        ...


@runtime_checkable
class SupportsBulkLane(Protocol):
    """A transport with a bulk lane: it learns each peer's bulk address from its Hello."""

    def set_bulk_address(self, peer_id: str, address: str) -> None: ...
