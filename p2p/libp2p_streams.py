"""libp2p stream I/O that survives trio cancellation, and an inbound stream for the FrameServer.

py-libp2p 0.8.1 quirk: a Noise write encrypts (advancing the nonce) before its socket send, and
that send is a trio checkpoint. A cancellation (a timeout, a cancelled scope) landing there
leaves the peer a nonce behind: the *whole connection* then fails with "Failed authentication
of message". yamux writes on reads too (window updates once data arrived). So here every write,
close and reset runs shielded, and a read first waits for data where cancelling is harmless
(``wait_readable``, on yamux's per-stream event) and then reads shielded. Waiting uses yamux
internals, read defensively; without them a read simply stays cancellable.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import trio
from libp2p.abc import INetStream

from p2p.bridge import Portal
from p2p.framing import FrameTimeout, TrioStreamChannel, frame_parts
from p2p.host import describe
from p2p.lane_support import LaneLimits
from p2p.transport import Frame, FrameHandler, TransportError

POLL_S = 0.01

log = logging.getLogger(__name__)


class Libp2pChannel(TrioStreamChannel):
    """A libp2p stream as a ByteChannel whose reads may be cancelled safely."""

    async def _read_some(self, n: int) -> bytes:
        if await wait_readable(self.stream):
            with trio.CancelScope(shield=True):
                return await super()._read_some(n)
        return await super()._read_some(n)


async def wait_readable(stream: INetStream) -> bool:
    """Wait until a read would not block; False if yamux's state cannot be inspected."""
    muxed = getattr(stream, "muxed_stream", None)
    conn = getattr(muxed, "conn", None)
    events = getattr(conn, "stream_events", None)
    buffers = getattr(conn, "stream_buffers", None)
    shutting_down = getattr(conn, "event_shutting_down", None)
    sid = getattr(muxed, "stream_id", None)
    if not (isinstance(events, dict) and isinstance(buffers, dict) and shutting_down is not None):
        return False
    while not (buffers.get(sid) or looks_closed(stream) or shutting_down.is_set()):
        event = events.get(sid)
        if event is None:
            break
        if event.is_set():  # yamux replaces a fired event only inside its own blocking read
            event = events[sid] = trio.Event()
        await event.wait()
    return True


async def send_frame(stream: INetStream, frame: Frame, *, deadline: float) -> int:
    """Write `frame`, shielded from outer cancellation; returns the bytes written.

    Past `deadline` the write is abandoned and the connection closed, since a yamux frame may
    then be half written.
    """
    sent = 0
    with trio.CancelScope(shield=True, deadline=deadline) as scope:
        for part in frame_parts(frame):
            await stream.write(cast(bytes, part))  # yamux slices and concatenates any buffer
            sent += len(part)
    if scope.cancelled_caught:
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await stream.muxed_conn.close()
        raise TransportError("a write stalled past its deadline; connection closed")
    return sent


async def reset_stream(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(5.0):
        try:
            await stream.reset()
        except Exception:
            log.debug("stream reset failed", exc_info=True)


def looks_closed(stream: INetStream) -> bool:
    """The remote half-closed or reset the stream, or its connection is gone (yamux flags)."""
    muxed = getattr(stream, "muxed_stream", None)
    return any(getattr(muxed, flag, False) for flag in ("recv_closed", "closed", "reset_received"))


def remote_gone(stream: INetStream) -> bool:
    muxed = getattr(stream, "muxed_stream", None)
    return bool(getattr(muxed, "reset_received", False) or getattr(muxed, "closed", False))


@asynccontextmanager
async def trio_deadline(seconds: float) -> AsyncIterator[None]:
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise FrameTimeout(f"no progress within {seconds}s") from None


class InboundStream:
    """An inbound libp2p stream as the FrameServer sees it; handlers run on asyncio."""

    def __init__(self, stream: INetStream, protocol: str, portal: Portal, limits: LaneLimits):
        self._stream = stream
        self._protocol = protocol
        self._portal = portal
        self._limits = limits
        self.channel = Libp2pChannel(stream)
        self.peer: str | None = str(stream.muxed_conn.peer_id)
        self.remote = str(self.peer)

    def deadline(self, seconds: float) -> AbstractAsyncContextManager[None]:
        return trio_deadline(seconds)

    async def next_protocol(self) -> str:
        return self._protocol

    async def check_head(self, handler: FrameHandler, head: bytes, body_len: int) -> Frame | None:
        return await self._portal.run_in_asyncio(_check_head, handler, self.peer, head, body_len)

    async def handle(self, handler: FrameHandler, frame: Frame) -> Frame:
        return await self._portal.run_in_asyncio(handler.handle, self.peer, frame)

    async def send(self, frame: Frame) -> int:
        return await send_frame(self._stream, frame, deadline=self._write_deadline())

    async def hang_up(self, frame: Frame) -> int:
        try:
            sent = await send_frame(self._stream, frame, deadline=self._write_deadline())
            with trio.CancelScope(shield=True):
                await self._stream.close()  # a half-close (FIN) for yamux
                with trio.move_on_after(self._limits.linger_s):
                    # The requester resets once it has read this; yamux offers no event for that.
                    while not remote_gone(self._stream):  # noqa: ASYNC110
                        await trio.sleep(POLL_S)
        except Exception as exc:
            log.debug("hanging up on %s: %s", self.peer, describe(exc))
            return 0
        return sent

    def _write_deadline(self) -> float:
        return trio.current_time() + self._limits.frame_s


async def _check_head(
    handler: FrameHandler, peer: str | None, head: bytes, body_len: int
) -> Frame | None:
    return handler.check_head(peer, head, body_len)
