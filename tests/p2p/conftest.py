"""Fixtures for p2p tests: real in-process libp2p hosts on 127.0.0.1, always stopped afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from p2p.host import HostConfig, P2PHost, PeerInfo
from p2p.identity import NodeKey

MakeHost = Callable[..., Awaitable[P2PHost]]


@pytest.fixture
async def make_host() -> AsyncIterator[MakeHost]:
    hosts: list[P2PHost] = []

    async def make(key: NodeKey | None = None, **config: Any) -> P2PHost:
        config.setdefault("peer_exchange_interval_s", 0.3)
        config.setdefault("backoff_initial_s", 0.1)
        host = P2PHost(key or NodeKey.generate(), HostConfig(**config))
        await host.start()
        hosts.append(host)
        return host

    yield make
    await asyncio.gather(*(h.stop(5.0) for h in hosts))


async def wait_until(predicate: Callable[[], bool], within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within_s}s")
        await asyncio.sleep(0.02)


def peer_ids(peers: list[PeerInfo]) -> set[str]:
    return {p.peer_id for p in peers}
