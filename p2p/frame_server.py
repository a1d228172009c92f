"""The serving half of both lanes: answer the frames arriving on one stream or connection.

Per frame: the start (protocol, preamble) must arrive within ``idle_s``; then, within
``frame_s``, the head. The body's bytes are reserved in the remote's in-flight budget, the head is
shown to the handler's ``check_head``, and only then is the whole body read (into one bytearray)
and the frame handed to ``handle``, whose reply is written back. A frame over a cap, for a
protocol nobody serves, or refused by ``check_head`` is answered (error notice or the handler's
refusal) and the stream is hung up without its body being read. The lane (libp2p or bulk TCP)
supplies the I/O and how handlers are called; the rules here are the same for both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from p2p.framing import (
    PREAMBLE_SIZE,
    ByteChannel,
    FrameTimeout,
    FrameTooLarge,
    StreamEnded,
    read_body,
    read_exact,
    read_preamble,
)
from p2p.lane_support import InflightBudget, LaneLimits, error_notice
from p2p.refusals import Reason
from p2p.transport import Frame, FrameHandler

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    handler: FrameHandler
    max_body: int


class InboundLane(Protocol):
    """One inbound stream or connection, as a lane presents it to the FrameServer."""

    @property
    def channel(self) -> ByteChannel: ...

    @property
    def remote(self) -> str:
        """Key of the in-flight budget."""
        ...

    @property
    def peer(self) -> str | None:
        """The channel-authenticated peer id handlers see, if any."""
        ...

    def deadline(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """Raises FrameTimeout when the body of the block runs over `seconds`."""
        ...

    async def next_protocol(self) -> str:
        """The protocol id of the next frame (raises StreamEnded when the peer hung up)."""
        ...

    async def check_head(
        self, handler: FrameHandler, head: bytes, body_len: int
    ) -> Frame | None: ...

    async def handle(self, handler: FrameHandler, frame: Frame) -> Frame: ...

    async def send(self, frame: Frame) -> int:
        """Write a reply (bounded in time); returns the bytes written."""
        ...

    async def hang_up(self, frame: Frame) -> int:
        """Write `frame` as the last reply, close without reading further; never raises.

        Returns the bytes written (0 if the peer was gone).
        """
        ...


class FrameServer:
    def __init__(
        self,
        handlers: Mapping[str, Served],
        budget: InflightBudget,
        limits: LaneLimits,
        counts: dict[str, int],
    ) -> None:
        self._handlers = handlers
        self._budget = budget
        self._limits = limits
        self._counts = counts

    async def serve(self, lane: InboundLane) -> None:
        """Answer frames until the peer hangs up, idles out or is refused; raises on I/O errors."""
        while await self._serve_frame(lane):
            pass

    async def _serve_frame(self, lane: InboundLane) -> bool:
        try:
            async with lane.deadline(self._limits.idle_s):
                protocol = await lane.next_protocol()
                served = self._handlers.get(protocol)
                if served is not None:
                    head_len, body_len = await read_preamble(lane.channel, max_body=served.max_body)
        except StreamEnded as exc:
            if exc.received:
                self._counts["errors"] += 1
            return False
        except FrameTimeout:
            return False
        except FrameTooLarge as exc:
            self._counts["refused_too_large"] += 1
            await self._hang_up(lane, error_notice(Reason.TOO_LARGE, str(exc)))
            return False
        if served is None:
            self._counts["errors"] += 1
            await self._hang_up(
                lane, error_notice(Reason.UNKNOWN_TYPE, f"no handler for protocol {protocol!r}")
            )
            return False
        self._counts["bytes_in"] += PREAMBLE_SIZE
        if not self._budget.reserve(lane.remote, body_len):
            self._counts["refused_mem_cap"] += 1
            notice = f"{body_len}-byte body is over the in-flight cap of {self._budget.cap} bytes"
            await self._hang_up(lane, error_notice(Reason.OVER_CAPACITY, notice))
            return False
        try:
            return await self._answer(lane, served.handler, head_len, body_len)
        finally:
            self._budget.release(lane.remote, body_len)

    async def _answer(
        self, lane: InboundLane, handler: FrameHandler, head_len: int, body_len: int
    ) -> bool:
        async with lane.deadline(self._limits.frame_s):
            head = await read_exact(lane.channel, head_len)
            self._counts["bytes_in"] += head_len
            try:
                refusal = await lane.check_head(handler, head, body_len)
            except Exception:
                log.exception("check_head failed")
                refusal = error_notice(Reason.INTERNAL, "internal error")
            if refusal is None:
                body = await read_body(lane.channel, body_len)
                self._counts["bytes_in"] += body_len
                self._counts["frames_in"] += 1
        if refusal is not None:
            self._counts["refused_by_handler"] += 1
            await self._hang_up(lane, refusal)
            return False
        try:
            reply = await lane.handle(handler, Frame(head, body))
        except Exception:
            log.exception("frame handler failed")
            self._counts["errors"] += 1
            await self._hang_up(lane, error_notice(Reason.INTERNAL, "internal error"))
            return False
        if not reply.head:  # reserved for transport error notices
            log.error("frame handler replied with an empty head")
            reply = error_notice(Reason.INTERNAL, "internal error")
        self._counts["bytes_out"] += await lane.send(reply)
        self._counts["frames_out"] += 1
        return True

    async def _hang_up(self, lane: InboundLane, frame: Frame) -> None:
        self._counts["frames_out"] += 1
        self._counts["bytes_out"] += await lane.hang_up(frame)
