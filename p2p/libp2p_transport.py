"""``Libp2pTransport``: the node's Transport over a started P2PHost, plus the bulk TCP lane.

Frames travel on libp2p (Noise-authenticated; handlers get the remote peer id) unless their body
is at least ``HostConfig.bulk_threshold_bytes``, or the caller expects a large reply (``bulk``),
and the peer's bulk address is known (``set_bulk_address``): those go over the bulk lane, where
handlers get ``peer=None``. If no
bulk connection can be opened, the frame goes over libp2p after all. Wire format, caps and the
check-head-before-body rule are the same on both lanes (``p2p.framing``,
``p2p.frame_server``); an error notice from the remote (over a cap, unknown protocol, crashed
handler) is raised here as TransportError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from p2p.bulk_client import BulkClient
from p2p.bulk_lane import BulkServer, BulkUnreachable, split_host_port
from p2p.errors import HostError
from p2p.frame_server import Served
from p2p.framing import DEFAULT_MAX_BODY, as_bytes_view
from p2p.host import HostConfig, P2PHost
from p2p.lane_support import COUNTERS, LaneLimits, raise_if_notice
from p2p.libp2p_lane import Libp2pLane
from p2p.transport import Frame, FrameHandler, TransportError

BACKSTOP_S = 5.0  # the libp2p side enforces the timeout; this only guards a stuck trio thread

log = logging.getLogger(__name__)


class Libp2pTransport:
    def __init__(
        self,
        host: P2PHost,
        config: HostConfig | None = None,
        *,
        limits: LaneLimits | None = None,
    ) -> None:
        self._host = host
        self._config = config or host.config
        self._limits = limits or LaneLimits()
        self._handlers: dict[str, Served] = {}
        self._trio_counts = dict.fromkeys(COUNTERS, 0)  # written only in the libp2p thread
        self._aio_counts = dict.fromkeys(COUNTERS, 0)  # written only in the asyncio thread
        cap = self._config.peer_inflight_bytes
        self._lane = Libp2pLane(self._handlers, self._limits, cap, self._trio_counts)
        self._bulk_server = BulkServer(self._handlers, self._limits, cap, self._aio_counts)
        self._bulk_client = BulkClient(self._limits, self._aio_counts)
        self._bulk_addrs: dict[str, str] = {}
        self._state: Literal["new", "started", "closed"] = "new"

    @property
    def local_peer_id(self) -> str:
        return self._host.peer_id

    @property
    def bulk_address(self) -> str:
        """Our bulk lane's "host:port" ("" when disabled or not started)."""
        return self._bulk_server.address

    @property
    def counters(self) -> dict[str, int]:
        return {name: self._trio_counts[name] + self._aio_counts[name] for name in COUNTERS}

    def serve(
        self, protocol: str, handler: FrameHandler, *, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        """Route requests for `protocol` to `handler`; bodies over `max_body` are refused."""
        if self._state == "closed":
            raise TransportError("transport is closed")
        if max_body < 0:
            raise ValueError("max_body must be >= 0")
        new = protocol not in self._handlers
        self._handlers[protocol] = Served(handler, max_body)
        if new and self._state == "started":
            try:
                self._host.call_soon_with_host(self._lane.register, protocol)
            except HostError as exc:
                raise TransportError(f"cannot serve {protocol}: {exc}") from exc

    def bulk_address_of(self, peer_id: str) -> str | None:
        """The bulk-lane address `peer_id` announced (None: unknown, or it has none)."""
        return self._bulk_addrs.get(peer_id)

    def set_bulk_address(self, peer_id: str, address: str) -> None:
        """Where `peer_id`'s bulk lane listens ("host:port"); "" forgets it."""
        if not address:
            self._bulk_addrs.pop(peer_id, None)
            return
        split_host_port(address)
        self._bulk_addrs[peer_id] = address

    async def start(self) -> None:
        """Register the served protocols on the (started) host and open the bulk listener."""
        if self._state != "new":
            raise TransportError(f"transport is {self._state}")
        try:
            await self._host.run_with_host(self._lane.start)
        except HostError as exc:
            raise TransportError(f"transport cannot start: {exc}") from exc
        if self._config.bulk_listen:
            try:
                await self._bulk_server.start(self._config.bulk_listen)
            except TransportError:
                with contextlib.suppress(HostError):
                    await self._host.run_with_host(self._lane.close)
                raise
        self._state = "started"
        log.info("transport up (bulk lane: %s)", self.bulk_address or "off")

    async def close(self, timeout: float = 5.0) -> None:
        """Stop serving and drop every stream and connection of ours (bounded by `timeout`)."""
        if self._state == "closed":
            return
        started, self._state = self._state == "started", "closed"
        self._bulk_client.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._bulk_server.close()
                if started and self._host.running:
                    with contextlib.suppress(HostError):
                        await self._host.run_with_host(self._lane.close)

    async def request(
        self, peer_id: str, protocol: str, frame: Frame, *, timeout: float, bulk: bool = False
    ) -> Frame:
        if self._state != "started":
            raise TransportError(f"transport is {self._state}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        address = self._bulk_addrs.get(peer_id)
        large = as_bytes_view(frame.body).nbytes >= self._config.bulk_threshold_bytes
        if address and (bulk or large):
            try:
                reply = await self._bulk_client.request(address, protocol, frame, timeout)
            except BulkUnreachable as exc:
                log.info("bulk lane of %s unreachable (%s); using libp2p", peer_id, exc)
                self._bulk_addrs.pop(peer_id, None)
            else:
                return raise_if_notice(reply, peer_id)
        left = max(0.0, deadline - loop.time())
        try:
            async with asyncio.timeout(left + BACKSTOP_S):
                reply = await self._host.run_with_host(
                    self._lane.request, peer_id, protocol, frame, left
                )
        except TimeoutError:
            raise TransportError(f"{protocol} to {peer_id} timed out after {timeout}s") from None
        except HostError as exc:
            raise TransportError(f"{protocol} to {peer_id}: {exc}") from exc
        return raise_if_notice(reply, peer_id)
