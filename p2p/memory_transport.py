"""An in-memory Transport for fast tests of the protocol core: same interface, no sockets."""

from __future__ import annotations

import asyncio

from p2p.transport import Frame, FrameHandler, TransportError, nbytes


class MemoryNetwork:
    def __init__(self) -> None:
        self.transports: dict[str, MemoryTransport] = {}

    def transport(self, peer_id: str, *, authenticated: bool = True) -> MemoryTransport:
        transport = MemoryTransport(self, peer_id, authenticated=authenticated)
        self.transports[peer_id] = transport
        return transport


class MemoryTransport:
    """Delivers frames by direct calls; `authenticated=False` acts like the bulk lane."""

    def __init__(self, network: MemoryNetwork, peer_id: str, *, authenticated: bool) -> None:
        self._network = network
        self._peer_id = peer_id
        self._authenticated = authenticated
        self._handlers: dict[str, FrameHandler] = {}
        self.bulk_addresses: dict[str, str] = {}

    @property
    def local_peer_id(self) -> str:
        return self._peer_id

    def serve(self, protocol: str, handler: FrameHandler) -> None:
        self._handlers[protocol] = handler

    def set_bulk_address(self, peer_id: str, address: str) -> None:
        self.bulk_addresses[peer_id] = address

    async def request(
        self, peer_id: str, protocol: str, frame: Frame, *, timeout: float, bulk: bool = False
    ) -> Frame:
        target = self._network.transports.get(peer_id)
        if target is None:
            raise TransportError(f"no route to {peer_id}")
        handler = target._handlers.get(protocol)
        if handler is None:
            raise TransportError(f"{peer_id} does not serve {protocol}")
        peer = self._peer_id if self._authenticated else None
        refusal = handler.check_head(peer, bytes(frame.head), nbytes(frame.body))
        if refusal is not None:
            return refusal
        delivered = Frame(head=bytes(frame.head), body=bytearray(frame.body))
        try:
            return await asyncio.wait_for(handler.handle(peer, delivered), timeout)
        except TimeoutError:
            raise TransportError(f"{peer_id} did not answer {protocol} in {timeout}s") from None
