"""One TCP connection as a ByteChannel, on asyncio's BufferedProtocol (works on uvloop).

Reads land directly in the caller's buffer: while ``read_into`` waits, ``get_buffer`` hands the
event loop the unfilled rest of the caller's view, so a body goes from the kernel into its
preallocated bytearray without an intermediate copy. Bytes that arrive while nobody reads are
kept in a pending buffer, and reading pauses while it holds PENDING_HIGH bytes. Writes wait on
the transport's flow control. A deadline (`deadline(seconds)`) costs nothing until a read or
write has to wait: only then is a timer set, for the time left.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import cast

from p2p.framing import FrameTimeout, StreamEnded
from p2p.transport import Buffer, TransportError

SCRATCH = 256 * 1024
PENDING_HIGH = 1024 * 1024
DISCARD_MAX = 1024 * 1024


class SocketChannel(asyncio.BufferedProtocol):
    def __init__(self, on_open: Callable[[SocketChannel], None] | None = None) -> None:
        self._on_open = on_open
        self._transport: asyncio.Transport | None = None
        self._scratch = bytearray(SCRATCH)
        self._pending = bytearray()
        self._target: memoryview | None = None
        self._filled = 0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._discarding = False
        self._discarded = 0
        self._ended = False  # no more bytes will arrive
        self._lost = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.received = 0
        self.remote_host = ""
        self._deadline: float | None = None
        """Loop time by which a waiting read or write must have made progress (None: never)."""

    @property
    def writable(self) -> bool:
        """The transport's write buffer is below its high-water mark (writes do not wait)."""
        return self._writable.is_set()

    @property
    def usable(self) -> bool:
        """Open both ways, nothing unread pending (worth returning to a pool)."""
        transport = self._transport
        return not (self._ended or transport is None or transport.is_closing() or self._pending)

    # asyncio.BufferedProtocol callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote_host = str(peer[0]) if peer else "?"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._on_open is not None:
            self._on_open(self)

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        if self._target is not None:
            return self._target[self._filled :]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        if self._target is not None:
            self._filled += nbytes
            if self._filled >= len(self._target):
                self._target = None
                self._wake()
        elif self._discarding:
            self._discarded += nbytes
            if self._discarded > DISCARD_MAX:
                self._pause()
        else:
            self._pending += memoryview(self._scratch)[:nbytes]
            if len(self._pending) >= PENDING_HIGH:
                self._pause()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._wake()
        self._lost.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ByteChannel ------------------------------------------------------------------------------

    async def read_into(self, view: memoryview) -> None:
        wanted = len(view)
        got = min(len(self._pending), wanted)
        if got:
            view[:got] = self._pending[:got]
            del self._pending[:got]
        if got == wanted:
            if self._paused and len(self._pending) < PENDING_HIGH // 2:
                self._resume()
            return
        if self._ended:
            raise StreamEnded(wanted, got)
        self._target, self._filled = view, got
        self._resume()
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = None if self._deadline is None else loop.call_at(self._deadline, _expire, waiter)
        try:
            await waiter
        finally:
            got, self._target, self._waiter = self._filled, None, None
            if timer is not None:
                timer.cancel()
        if got < wanted:
            raise StreamEnded(wanted, got)

    def read_now(self, n: int) -> bytes | None:
        """The next `n` bytes if they are pending already (no wait, no future), else None."""
        if len(self._pending) < n:
            return None
        data = bytes(self._pending[:n])
        del self._pending[:n]
        if self._paused and len(self._pending) < PENDING_HIGH // 2:
            self._resume()
        return data

    async def write(self, data: Buffer) -> None:
        self.write_now(data)
        if not self._writable.is_set():
            if self._deadline is None:
                await self._writable.wait()
            else:
                try:
                    async with asyncio.timeout_at(self._deadline):
                        await self._writable.wait()
                except TimeoutError:
                    raise FrameTimeout("no progress writing before the deadline") from None
            if self._lost.is_set():
                raise TransportError("connection lost while writing")

    def deadline(self, seconds: float) -> Deadline:
        """A context (sync or async) within which reads and writes that wait fail with
        FrameTimeout once `seconds` have passed."""
        return Deadline(self, asyncio.get_running_loop().time() + seconds)

    def deadline_at(self, when: float) -> Deadline:
        """`deadline` by loop time `when`."""
        return Deadline(self, when)

    def write_now(self, data: Buffer) -> None:
        """Hand `data` to the transport without waiting for its buffer to drain (small writes;
        the next `write` waits if the buffer is over its high-water mark)."""
        transport = self._transport
        if transport is None or self._lost.is_set() or transport.is_closing():
            raise TransportError("connection closed")
        transport.write(data)

    # closing ----------------------------------------------------------------------------------

    async def hang_up(self, linger: float) -> None:
        """Half-close, drop what still arrives, wait up to `linger` for the peer to hang up."""
        self._discarding = True
        self._pending.clear()
        self._resume()
        transport = self._transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(linger):
                await self._lost.wait()
        self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _pause(self) -> None:
        if not self._paused and self._transport is not None and not self._transport.is_closing():
            self._paused = True
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self._transport is not None and not self._transport.is_closing():
            self._paused = False
            self._transport.resume_reading()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(FrameTimeout("no progress reading before the deadline"))


class Deadline:
    """`SocketChannel.deadline`: sets the channel's deadline, restores the outer one on exit."""

    __slots__ = ("_at", "_channel", "_outer")

    def __init__(self, channel: SocketChannel, at: float) -> None:
        self._channel = channel
        self._at = at
        self._outer: float | None = None

    def __enter__(self) -> None:
        channel = self._channel
        self._outer = channel._deadline
        channel._deadline = self._at if self._outer is None else min(self._at, self._outer)

    def __exit__(self, *exc: object) -> None:
        self._channel._deadline = self._outer

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()
