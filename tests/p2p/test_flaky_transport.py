"""The flaky-net fault: a share of requests is lost or delayed, the rest pass unchanged."""

import asyncio

import pytest

from p2p.flaky_transport import FlakyTransport
from p2p.memory_transport import MemoryNetwork
from p2p.transport import Frame, TransportError


class Echo:
    def check_head(self, peer: str | None, head: bytes, body_len: int) -> Frame | None:
        return None

    async def handle(self, peer: str | None, frame: Frame) -> Frame:
        return Frame(head=b"re:" + bytes(frame.head), body=frame.body)


async def test_loses_and_delays_about_the_asked_share() -> None:
    network = MemoryNetwork()
    network.transport("b").serve("/echo/1", Echo())
    flaky = FlakyTransport(network.transport("a"), 0.2, seed=1)

    async def one(i: int) -> bytes | None:
        try:
            reply = await flaky.request("b", "/echo/1", Frame(str(i).encode()), timeout=5)
        except TransportError:
            return None
        return bytes(reply.head)

    replies = await asyncio.gather(*(one(i) for i in range(400)))
    lost = [i for i, r in enumerate(replies) if r is None]
    assert len(lost) == flaky.counters["dropped"]
    assert 20 <= flaky.counters["dropped"] <= 60 and 20 <= flaky.counters["delayed"] <= 60
    assert all(r == f"re:{i}".encode() for i, r in enumerate(replies) if r is not None)
    with pytest.raises(ValueError):
        FlakyTransport(network.transport("c"), 1.0)
