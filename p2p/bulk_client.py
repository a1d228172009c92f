"""The bulk lane's requesting side: pooled plain-TCP connections to other nodes' bulk lanes.

A small pool of idle connections per address, one request in flight per connection. The request
is written by a task while the reply is read; a reply that comes before the body was sent is a
refusal, and the connection is dropped. A failure on a reused connection before any reply byte
arrived (the server had hung up on it) is retried once on a new connection. Failing to connect
raises BulkUnreachable, so the caller may fall back to libp2p.
"""

from __future__ import annotations

import asyncio
import logging

from p2p.bulk_lane import BulkUnreachable, encode_protocol, split_host_port
from p2p.framing import (
    DEFAULT_MAX_BODY,
    PREAMBLE_SIZE,
    SMALL_BODY,
    FrameTimeout,
    as_bytes_view,
    frame_parts,
    read_body,
    read_head,
)
from p2p.lane_support import IdlePool, LaneLimits
from p2p.socket_channel import SocketChannel
from p2p.transport import Frame, TransportError

CONNECT_S = 5.0

log = logging.getLogger(__name__)


class BulkClient:
    def __init__(self, limits: LaneLimits, counts: dict[str, int]) -> None:
        self._counts = counts
        self._pool: IdlePool[str, SocketChannel] = IdlePool(limits.pool_size, limits.pool_idle_s)
        self._busy: set[SocketChannel] = set()
        self._closed = False

    async def request(self, address: str, protocol: str, frame: Frame, timeout: float) -> Frame:
        prefix = encode_protocol(protocol)
        deadline = asyncio.get_running_loop().time() + timeout
        connect_s = min(CONNECT_S, timeout / 2)
        try:
            return await self._request(address, prefix, frame, deadline, connect_s)
        except FrameTimeout:
            self._counts["errors"] += 1
            raise TransportError(f"{protocol} to {address} timed out after {timeout}s") from None
        except TransportError:
            self._counts["errors"] += 1
            raise

    def close(self) -> None:
        self._closed = True
        for channel in [*self._pool.drain(), *self._busy]:
            channel.abort()

    async def _request(
        self, address: str, prefix: bytes, frame: Frame, deadline: float, connect_s: float
    ) -> Frame:
        """The exchange on a pooled or new connection; its reads and writes that wait fail with
        FrameTimeout at loop time `deadline` (no timer is set unless one waits)."""
        for attempt in (1, 2):
            channel, reused = await self._channel(address, connect_s)
            received_before = channel.received
            self._busy.add(channel)
            try:
                with channel.deadline_at(deadline):
                    reply, reusable = await self._exchange(channel, prefix, frame)
            except FrameTimeout:
                channel.abort()
                raise
            except TransportError:
                channel.abort()
                if reused and attempt == 1 and channel.received == received_before:
                    self._counts["retries"] += 1
                    continue
                raise
            except BaseException:
                channel.abort()
                raise
            finally:
                self._busy.discard(channel)
            if reusable and not self._closed:
                evicted = self._pool.give(address, channel)
                if evicted is not None:
                    evicted.abort()
            else:
                channel.abort()
            return reply
        raise AssertionError("unreachable")

    async def _channel(self, address: str, connect_s: float) -> tuple[SocketChannel, bool]:
        while True:
            channel, expired = self._pool.take(address)
            for old in expired:
                old.abort()
            if channel is None:
                break
            if channel.usable:
                return channel, True
            channel.abort()
        if self._closed:
            raise TransportError("transport is closed")
        host, port = split_host_port(address)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                _, channel = await loop.create_connection(SocketChannel, host, port)
        except (OSError, TimeoutError) as exc:
            raise BulkUnreachable(f"bulk lane {address}: {exc or 'connect timed out'}") from exc
        self._counts["bulk_connections_opened"] += 1
        return channel, False

    async def _exchange(
        self, channel: SocketChannel, prefix: bytes, frame: Frame
    ) -> tuple[Frame, bool]:
        """(reply, whether the connection may be reused)."""
        if as_bytes_view(frame.body).nbytes <= SMALL_BODY:
            return await self._exchange_small(channel, prefix, frame)
        sending = asyncio.get_running_loop().create_task(self._send(channel, prefix, frame))
        try:
            head, body_len = await read_head(channel, max_body=DEFAULT_MAX_BODY)
            body = await read_body(channel, body_len)
        except BaseException:
            sending.cancel()
            raise
        sent = sending.done() and sending.result()
        if not sent:  # answered before the body was sent (refused early) or the write failed
            sending.cancel()
        self._counts["frames_in"] += 1
        self._counts["bytes_in"] += PREAMBLE_SIZE + len(head) + body_len
        return Frame(head, body), sent and channel.usable

    async def _exchange_small(
        self, channel: SocketChannel, prefix: bytes, frame: Frame
    ) -> tuple[Frame, bool]:
        """A frame that fits one write: written at once (the transport buffers it), no task."""
        data = b"".join((prefix, *frame_parts(frame)))
        channel.write_now(data)
        self._counts["bytes_out"] += len(data)
        self._counts["frames_out"] += 1
        head, body_len = await read_head(channel, max_body=DEFAULT_MAX_BODY)
        body = await read_body(channel, body_len)
        self._counts["frames_in"] += 1
        self._counts["bytes_in"] += PREAMBLE_SIZE + len(head) + body_len
        return Frame(head, body), channel.usable

    async def _send(self, channel: SocketChannel, prefix: bytes, frame: Frame) -> bool:
        parts = frame_parts(frame)
        try:
            first = prefix + next(parts)
            await channel.write(first)
            sent = len(first)
            for part in parts:
                await channel.write(part)
                sent += len(part)
        except TransportError as exc:
            log.debug("bulk send failed: %s", exc)
            channel.abort()  # wakes the reader
            return False
        self._counts["bytes_out"] += sent
        self._counts["frames_out"] += 1
        return True
