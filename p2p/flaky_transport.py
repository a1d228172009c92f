"""A Transport that loses or delays a share of its requests: the `flaky-net` fault for chaos
runs (`tessera node --fault flaky-net:0.05`, `p2p.flaky_net`), off by default.

Each request, with probability `rate`, is lost (after a short wait it fails as a lost message
would: TransportError) or, as often, delayed by up to half a second before it goes. Everything
else passes through unchanged, so the node's guarantees (signatures, replay guard, retries)
meet real loss and reordering.
"""

from __future__ import annotations

import asyncio
import random

from p2p.transport import Frame, FrameHandler, SupportsBulkLane, Transport, TransportError


class FlakyTransport:
    def __init__(self, inner: Transport, rate: float, seed: int | None = None) -> None:
        if not 0 < rate < 1:
            raise ValueError(f"flaky-net rate must be in (0, 1), got {rate}")
        self._inner = inner
        self._rate = rate
        self._rng = random.Random(seed)
        self.counters = {"dropped": 0, "delayed": 0}

    @property
    def local_peer_id(self) -> str:
        return self._inner.local_peer_id

    def serve(self, protocol: str, handler: FrameHandler) -> None:
        self._inner.serve(protocol, handler)

    def set_bulk_address(self, peer_id: str, address: str) -> None:
        if isinstance(self._inner, SupportsBulkLane):
            self._inner.set_bulk_address(peer_id, address)

    async def request(
        self, peer_id: str, protocol: str, frame: Frame, *, timeout: float, bulk: bool = False
    ) -> Frame:
        roll = self._rng.random()
        if roll < self._rate / 2:
            self.counters["dropped"] += 1
            await asyncio.sleep(min(timeout, self._rng.uniform(0.05, 0.5)))
            raise TransportError(f"flaky-net: request to {peer_id} on {protocol} lost")
        if roll < self._rate:
            self.counters["delayed"] += 1
            await asyncio.sleep(self._rng.uniform(0.05, 0.5))
        return await self._inner.request(peer_id, protocol, frame, timeout=timeout, bulk=bulk)
