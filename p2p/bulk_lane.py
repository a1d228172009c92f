"""The bulk lane: large frames over plain TCP on asyncio (uvloop), beside the libp2p lane.

py-libp2p with Noise moves about 100-140 MB/s here, a plain socket 1-2.6 GB/s. Tensor bodies do
not need the channel's authentication: the signed head carries the body's digest, checked by the
core, so frames may travel on an unauthenticated connection and handlers get ``peer=None`` (the
core then relies on the head's signature and admission). Each frame is preceded by
``[u16 proto_len][proto]`` naming its protocol id; the reply comes back on the same connection
as a plain frame. The FrameServer rules are the same as on libp2p (head checked before the body
is read; body and in-flight caps, the latter keyed by the remote IP).

This module holds the wire pieces and the server; ``p2p.bulk_client`` sends the requests.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from p2p.frame_server import FrameServer, Served
from p2p.framing import (
    SMALL_BODY,
    FrameTimeout,
    FramingError,
    as_bytes_view,
    encode_frame,
    read_exact,
    write_frame,
)
from p2p.lane_support import InflightBudget, LaneLimits
from p2p.socket_channel import SocketChannel
from p2p.transport import Frame, FrameHandler, TransportError

PROTO_LEN = struct.Struct(">H")
MAX_PROTO = 256
MAX_CONNECTIONS = 256

log = logging.getLogger(__name__)


class BulkUnreachable(TransportError):
    """No bulk connection could be opened (nothing was sent)."""


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not (sep and host and port.isdigit()):
        raise TransportError(f"not a host:port address: {address!r}")
    return host.strip("[]"), int(port)


def encode_protocol(protocol: str) -> bytes:
    raw = protocol.encode()
    if not 0 < len(raw) <= MAX_PROTO:
        raise TransportError(f"protocol id of {len(raw)} bytes (1..{MAX_PROTO})")
    return PROTO_LEN.pack(len(raw)) + raw


class BulkServer:
    def __init__(
        self,
        handlers: Mapping[str, Served],
        limits: LaneLimits,
        peer_cap: int,
        counts: dict[str, int],
    ) -> None:
        self._rules = FrameServer(handlers, InflightBudget(peer_cap), limits, counts)
        self._limits = limits
        self._counts = counts
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address = ""

    async def start(self, listen: str) -> str:
        """Listen on `listen` ("host:port", port 0 picks one); returns the bound "host:port"."""
        host, port = split_host_port(listen)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: SocketChannel(self._accepted), host, port
            )
        except OSError as exc:
            raise TransportError(f"bulk lane cannot listen on {listen}: {exc.strerror}") from exc
        bound_port = self._server.sockets[0].getsockname()[1]
        self.address = f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _accepted(self, channel: SocketChannel) -> None:
        if len(self._tasks) >= MAX_CONNECTIONS:
            self._counts["errors"] += 1
            channel.abort()
            return
        task = asyncio.get_running_loop().create_task(self._serve(channel), name="bulk-conn")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, channel: SocketChannel) -> None:
        lane = _InboundConnection(channel, self._limits)
        try:
            await self._rules.serve(lane)
        except Exception as exc:
            self._counts["errors"] += 1
            log.debug("bulk connection from %s failed: %s", channel.remote_host, exc)
        finally:
            channel.abort()


class _InboundConnection:
    """An inbound bulk connection as the FrameServer sees it."""

    def __init__(self, channel: SocketChannel, limits: LaneLimits) -> None:
        self.channel = channel
        self._limits = limits
        self.peer: str | None = None
        self.remote = f"bulk:{channel.remote_host}"

    def deadline(self, seconds: float) -> AbstractAsyncContextManager[None]:
        return self.channel.deadline(seconds)

    async def next_protocol(self) -> str:
        (size,) = PROTO_LEN.unpack(await read_exact(self.channel, PROTO_LEN.size))
        if not 0 < size <= MAX_PROTO:
            raise FramingError(f"protocol id of {size} bytes")
        try:
            return (await read_exact(self.channel, size)).decode()
        except UnicodeDecodeError:
            raise FramingError("protocol id is not UTF-8") from None

    async def check_head(self, handler: FrameHandler, head: bytes, body_len: int) -> Frame | None:
        return handler.check_head(None, head, body_len)

    async def handle(self, handler: FrameHandler, frame: Frame) -> Frame:
        return await handler.handle(None, frame)

    async def send(self, frame: Frame) -> int:
        if as_bytes_view(frame.body).nbytes <= SMALL_BODY and self.channel.writable:
            data = encode_frame(frame)  # the transport takes it at once: nothing to time out
            self.channel.write_now(data)
            return len(data)
        async with self.channel.deadline(self._limits.frame_s):
            return await write_frame(self.channel, frame)

    async def hang_up(self, frame: Frame) -> int:
        try:
            async with asyncio_deadline(self._limits.frame_s):
                sent = await write_frame(self.channel, frame)
        except TransportError:
            self.channel.abort()
            return 0
        await self.channel.hang_up(self._limits.linger_s)
        return sent


class asyncio_deadline:
    """`asyncio.timeout(seconds)` raising FrameTimeout (a class: no generator per frame)."""

    __slots__ = ("_seconds", "_timeout")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._timeout = asyncio.timeout(seconds)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            raise FrameTimeout(f"no progress within {self._seconds}s") from None
