"""The libp2p lane, trio side: serves inbound streams and sends requests over pooled streams.

Everything here runs in the libp2p (trio) thread; asyncio reaches it through
``P2PHost.run_with_host``, and handlers are called back on asyncio through the portal.

Requests: one in flight per stream; idle streams are kept per (peer, protocol) and reused (a new
stream costs 4-8 ms of negotiation). The request is written by a separate task while the reply
is read, so a reply that comes before the body is fully sent (a refusal after the head) is seen
at once; the stream is then reset, which also stops the writer. Writes are shielded from the
request's timeout, because cancelling a yamux write midway would corrupt the whole connection;
the reset stops them instead, and a write stuck past its own deadline closes the connection. A
request that fails on a *reused* stream before any reply byte arrived (the server had hung up on
it) is retried once on a new stream. Stream I/O helpers and the inbound side are in
``p2p.libp2p_streams``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from p2p.bridge import Portal
from p2p.frame_server import FrameServer, Served
from p2p.framing import DEFAULT_MAX_BODY, PREAMBLE_SIZE, StreamEnded, read_body, read_head
from p2p.host import describe
from p2p.lane_support import IdlePool, InflightBudget, LaneLimits
from p2p.libp2p_streams import (
    InboundStream,
    Libp2pChannel,
    looks_closed,
    reset_stream,
    send_frame,
)
from p2p.transport import Frame, TransportError

log = logging.getLogger(__name__)


class Libp2pLane:
    def __init__(
        self,
        handlers: Mapping[str, Served],
        limits: LaneLimits,
        peer_cap: int,
        counts: dict[str, int],
    ) -> None:
        self._handlers = handlers
        self._limits = limits
        self._counts = counts
        self._server = FrameServer(handlers, InflightBudget(peer_cap), limits, counts)
        self._pool: IdlePool[tuple[str, str], INetStream] = IdlePool(
            limits.pool_size, limits.pool_idle_s, trio.current_time
        )
        self._inbound: dict[INetStream, trio.CancelScope] = {}
        self._all_inbound_done = trio.Event()
        self._outbound: set[INetStream] = set()
        self._portal: Portal | None = None
        self._closed = False

    async def start(self, host: IHost, portal: Portal) -> None:
        self._portal = portal
        for protocol in list(self._handlers):
            self.register(host, protocol)

    def register(self, host: IHost, protocol: str) -> None:
        host.set_stream_handler(TProtocol(protocol), partial(self._serve_stream, protocol))

    async def close(self, host: IHost, _portal: Portal) -> None:
        """Stop serving, reset every stream of ours, wait (bounded) for inbound tasks to end."""
        self._closed = True
        for protocol in list(self._handlers):
            host.remove_stream_handler(TProtocol(protocol))
        for scope in self._inbound.values():
            scope.cancel()
        for stream in [*self._pool.drain(), *self._outbound, *self._inbound]:
            await reset_stream(stream)
        if self._inbound:
            with trio.move_on_after(self._limits.linger_s + 1.0):
                await self._all_inbound_done.wait()

    async def request(
        self,
        host: IHost,
        _portal: Portal,
        peer_id: str,
        protocol: str,
        frame: Frame,
        timeout: float,
    ) -> Frame:
        if self._closed:
            raise TransportError("transport is closed")
        try:
            pid = ID.from_base58(peer_id)
        except Exception:
            raise TransportError(f"not a peer id: {peer_id!r}") from None
        write_deadline = trio.current_time() + timeout + self._limits.write_grace_s
        try:
            with trio.fail_after(timeout):
                return await self._request(host, pid, (peer_id, protocol), frame, write_deadline)
        except trio.TooSlowError:
            self._counts["errors"] += 1
            raise TransportError(f"{protocol} to {peer_id} timed out after {timeout}s") from None
        except TransportError:
            self._counts["errors"] += 1
            raise
        except Exception as exc:
            self._counts["errors"] += 1
            raise TransportError(f"{protocol} to {peer_id}: {describe(exc)}") from exc

    async def _request(
        self, host: IHost, pid: ID, key: tuple[str, str], frame: Frame, write_deadline: float
    ) -> Frame:
        for attempt in (1, 2):
            stream, reused = await self._stream(host, pid, key)
            channel = Libp2pChannel(stream)
            self._outbound.add(stream)
            try:
                reply, reusable = await self._exchange(stream, channel, frame, write_deadline)
            except (StreamEnded, StreamError):
                if reused and attempt == 1 and channel.received == 0:
                    self._counts["retries"] += 1
                    continue
                raise
            finally:
                self._outbound.discard(stream)
            if reusable and not self._closed:
                evicted = self._pool.give(key, stream)
                if evicted is not None:
                    await reset_stream(evicted)
            else:
                await reset_stream(stream)
            return reply
        raise AssertionError("unreachable")

    async def _stream(self, host: IHost, pid: ID, key: tuple[str, str]) -> tuple[INetStream, bool]:
        """(an idle pooled stream or a new one, whether it was reused)."""
        while True:
            stream, expired = self._pool.take(key)
            for old in expired:
                await reset_stream(old)
            if stream is None:
                break
            if not looks_closed(stream):
                return stream, True
            await reset_stream(stream)
        await _connect(host, pid)
        try:
            stream = await host.new_stream(pid, [TProtocol(key[1])])
        except StreamFailure as exc:
            if str(exc.__cause__).startswith("protocols not supported"):
                raise TransportError(f"{key[0]} does not serve {key[1]}") from None
            raise
        self._counts["streams_opened"] += 1
        return stream, False

    async def _exchange(
        self, stream: INetStream, channel: Libp2pChannel, frame: Frame, write_deadline: float
    ) -> tuple[Frame, bool]:
        """(reply, whether the stream may be reused); resets the stream on any failure."""
        sending = _Sending()
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_request, stream, frame, write_deadline, sending)
            try:
                head, body_len = await read_head(channel, max_body=DEFAULT_MAX_BODY)
                body = await read_body(channel, body_len)
            except BaseException as exc:
                await reset_stream(stream)
                if not isinstance(exc, Exception):
                    raise
                failure = exc
            else:
                if not sending.done:  # answered before the body was sent: refused early
                    await reset_stream(stream)
        if failure is not None:
            raise failure
        self._counts["frames_in"] += 1
        self._counts["bytes_in"] += PREAMBLE_SIZE + len(head) + body_len
        reusable = sending.done and not channel.buffered and not looks_closed(stream)
        return Frame(head, body), reusable

    async def _send_request(
        self, stream: INetStream, frame: Frame, deadline: float, sending: _Sending
    ) -> None:
        try:
            self._counts["bytes_out"] += await send_frame(stream, frame, deadline=deadline)
        except Exception as exc:
            log.debug("sending a frame failed: %s", describe(exc))
            await reset_stream(stream)  # wakes the reader
            return
        self._counts["frames_out"] += 1
        sending.done = True

    async def _serve_stream(self, protocol: str, stream: INetStream) -> None:
        """libp2p's handler for an inbound stream on one of our protocols."""
        if self._closed or self._portal is None:
            await reset_stream(stream)
            return
        lane = InboundStream(stream, protocol, self._portal, self._limits)
        with trio.CancelScope() as scope:
            self._inbound[stream] = scope
            try:
                await self._server.serve(lane)
            except Exception as exc:
                self._counts["errors"] += 1
                log.debug("%s stream from %s failed: %s", protocol, lane.peer, describe(exc))
            finally:
                self._forget_inbound(stream)
                await reset_stream(stream)

    def _forget_inbound(self, stream: INetStream) -> None:
        del self._inbound[stream]
        if self._closed and not self._inbound:
            self._all_inbound_done.set()


@dataclass(slots=True)
class _Sending:
    done: bool = False


async def _connect(host: IHost, pid: ID) -> None:
    network = host.get_network()
    if any(not conn.is_closed for conn in network.connections.get(pid, [])):
        return
    try:
        addrs = host.get_peerstore().addrs(pid)
    except Exception:  # PeerStoreError: nothing known
        addrs = []
    if not addrs:
        raise TransportError(f"not connected to {pid} and no address known")
    unblock = getattr(network, "unblock_peer", None)  # libp2p blocks a peer after a failed dial
    if callable(unblock):
        unblock(pid)
    await host.connect(PeerInfo(pid, addrs))
