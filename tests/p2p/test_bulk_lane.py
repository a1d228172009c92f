"""The bulk TCP lane on its own: replies, pooling, stale-connection retry, garbage, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from p2p.bulk_client import BulkClient
from p2p.bulk_lane import (
    BulkServer,
    BulkUnreachable,
    encode_protocol,
    split_host_port,
)
from p2p.frame_server import Served
from p2p.framing import (
    AsyncioStreamChannel,
    encode_frame,
    encode_preamble,
    read_body,
    read_exact,
    read_head,
    write_frame,
)
from p2p.lane_support import COUNTERS, IdlePool, InflightBudget, LaneLimits
from p2p.transport import MAX_HEAD_BYTES, Frame, TransportError
from tests.p2p.conftest import wait_until
from tests.p2p.test_libp2p_transport import Recorder

pytestmark = pytest.mark.timeout(60)
PROTO = "/tessera/test/1"
LIMITS = LaneLimits(linger_s=0.2)


@dataclass
class Lane:
    server: BulkServer
    client: BulkClient
    handler: Recorder
    server_counts: dict[str, int]
    client_counts: dict[str, int]

    async def ask(self, frame: Frame, protocol: str = PROTO, timeout: float = 10.0) -> Frame:
        return await self.client.request(self.server.address, protocol, frame, timeout)


@pytest.fixture
async def lane() -> AsyncIterator[Lane]:
    handler = Recorder()
    server_counts, client_counts = dict.fromkeys(COUNTERS, 0), dict.fromkeys(COUNTERS, 0)
    server = BulkServer({PROTO: Served(handler, 64 * 1024)}, LIMITS, 1 << 30, server_counts)
    await server.start("127.0.0.1:0")
    client = BulkClient(LIMITS, client_counts)
    yield Lane(server, client, handler, server_counts, client_counts)
    client.close()
    await server.close()


async def test_requests_reuse_one_connection_and_handlers_see_no_peer(lane: Lane):
    for i in range(5):
        reply = await lane.ask(Frame(b"%d" % i, b"x" * i))
        assert reply.head == b"re:%d" % i
    assert [peer for peer, _ in lane.handler.handled] == [None] * 5
    assert lane.client_counts["bulk_connections_opened"] == 1
    assert lane.server_counts["frames_in"] == 5


async def test_unknown_protocol_gets_an_error_notice(lane: Lane):
    reply = await lane.ask(Frame(b"h", b"body"), protocol="/tessera/other/1")
    assert reply.head == b""
    assert bytes(reply.body).startswith(b"unknown_type: no handler for protocol '/tessera/other/1'")
    assert (await lane.ask(Frame(b"after"))).head == b"re:after"


async def test_unreachable_address_raises_bulk_unreachable(lane: Lane):
    with pytest.raises(BulkUnreachable):
        await lane.client.request("127.0.0.1:1", PROTO, Frame(b"h"), 5.0)


async def test_connection_dropped_before_the_reply_is_retried_once():
    """A server that hangs up on a pooled connection: the request goes again on a new one."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        channel = AsyncioStreamChannel(reader, writer)
        with contextlib.suppress(TransportError):
            while True:
                await read_exact(channel, 2 + len(PROTO))
                head, body_len = await read_head(channel, max_body=1 << 20)
                await read_body(channel, body_len)
                if connections == 1 and head == b"second":
                    break  # drop it unanswered, as a server that had hung up
                await write_frame(channel, Frame(b"re:" + head))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    counts = dict.fromkeys(COUNTERS, 0)
    client = BulkClient(LIMITS, counts)
    try:
        assert (await client.request(address, PROTO, Frame(b"first"), 5.0)).head == b"re:first"
        assert (await client.request(address, PROTO, Frame(b"second"), 5.0)).head == b"re:second"
    finally:
        client.close()
        server.close()
        await server.wait_closed()
    assert counts["retries"] == 1 and counts["bulk_connections_opened"] == 2


async def test_close_ends_every_connection_task(lane: Lane):
    lane.handler.gate = asyncio.Event()
    pending = asyncio.create_task(lane.ask(Frame(b"slow", b"x")))
    await wait_until(lambda: len(lane.handler.handled) == 1)
    current = asyncio.current_task()
    lane.client.close()
    await lane.server.close()
    with pytest.raises(TransportError):
        await pending
    await wait_until(lambda: asyncio.all_tasks() == {current})


def test_addresses_and_protocol_ids_are_checked():
    assert split_host_port("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_host_port("[::1]:9") == ("::1", 9)
    for bad in ("nohost", ":80", "host:", "host:x"):
        with pytest.raises(TransportError):
            split_host_port(bad)
    assert encode_protocol("/a") == b"\x00\x02/a"
    with pytest.raises(TransportError):
        encode_protocol("/" + "x" * 300)


async def test_garbage_over_the_bulk_lane_leaves_the_server_serving(lane: Lane):
    port = split_host_port(lane.server.address)[1]
    rng = random.Random(11)
    sent = 0
    while sent < 10_000:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        draining = asyncio.create_task(drain(reader))
        sent += await write_garbage(writer, rng, 10_000 - sent, draining)
        with contextlib.suppress(OSError):
            writer.write_eof()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.wait_for(draining, 10)
        writer.close()
    counters = lane.server_counts
    assert sent == 10_000
    assert counters["frames_in"] > 1_000
    assert counters["refused_too_large"] > 0 and counters["refused_by_handler"] > 0
    assert counters["errors"] > 0
    assert (await lane.ask(Frame(b"still", b"there"))).head == b"re:still"


async def drain(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(1 << 16):
            pass


async def write_garbage(
    writer: asyncio.StreamWriter, rng: random.Random, budget: int, draining: asyncio.Task[None]
) -> int:
    """Frames until the server ends the connection or a closing kind is drawn; returns how many."""
    sent = 0
    with contextlib.suppress(OSError):
        while sent < budget and not draining.done():
            sent += 1
            kind = rng.random()
            head, body = rng.randbytes(rng.randint(0, 40)), rng.randbytes(rng.randint(0, 2000))
            good = encode_protocol(PROTO) + encode_frame(Frame(head, body))
            if kind < 0.97:
                writer.write(good)
            elif kind < 0.975:
                writer.write(rng.randbytes(rng.randint(1, 64)))
            elif kind < 0.98:
                writer.write(encode_protocol("/tessera/x" + head.hex()) + good[2 + len(PROTO) :])
            elif kind < 0.985:
                writer.write(encode_protocol(PROTO))
                writer.write(encode_preamble(rng.randint(0, MAX_HEAD_BYTES), 2**63))
            elif kind < 0.9925:
                writer.write(good[: rng.randint(1, len(good) - 1)])
                return sent
            else:
                writer.write(encode_protocol(PROTO) + encode_frame(Frame(b"refuse" + head, body)))
            await writer.drain()
    return sent


def test_idle_pool_keeps_newest_evicts_oldest_and_expires():
    now = [0.0]
    pool: IdlePool[str, str] = IdlePool(size=2, max_age=10.0, clock=lambda: now[0])
    assert pool.give("k", "a") is None and pool.give("k", "b") is None
    assert pool.give("k", "c") == "a"  # over size: the oldest goes
    assert pool.take("k") == ("c", [])
    now[0] = 20.0
    assert pool.take("k") == (None, ["b"])
    pool.give("k", "d")
    assert pool.drain() == ["d"] and len(pool) == 0


def test_inflight_budget_caps_each_remote_separately():
    budget = InflightBudget(cap=100)
    assert budget.reserve("a", 60) and not budget.reserve("a", 41) and budget.reserve("b", 100)
    budget.release("a", 60)
    assert budget.held("a") == 0 and budget.reserve("a", 100)


async def test_a_request_unanswered_past_its_timeout_fails_once_without_retry(lane: Lane):
    lane.handler.gate = asyncio.Event()
    assert (await lane.ask(Frame(b"warm"))).head == b"re:warm"  # a pooled connection
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TransportError, match="timed out after 0.3s"):
        await lane.ask(Frame(b"slow one", b"x" * 100), timeout=0.3)
    assert 0.3 <= loop.time() - started < 2.0
    assert lane.client_counts["errors"] == 1 and lane.client_counts["retries"] == 0
    lane.handler.gate.set()
    assert (await lane.ask(Frame(b"after"))).head == b"re:after"  # on a new connection
    assert lane.client_counts["bulk_connections_opened"] == 2


@pytest.mark.parametrize("sent", ["nothing", "half a frame"])
async def test_the_server_drops_a_connection_that_stalls(sent: str):
    counts = dict.fromkeys(COUNTERS, 0)
    limits = LaneLimits(idle_s=0.3, frame_s=0.3, linger_s=0.2)
    server = BulkServer({PROTO: Served(Recorder(), 64 * 1024)}, limits, 1 << 30, counts)
    await server.start("127.0.0.1:0")
    host, port = split_host_port(server.address)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if sent == "half a frame":  # a head announcing 1,000 body bytes, then 10 of them
            writer.write(encode_protocol(PROTO) + encode_preamble(4, 1000) + b"head" + b"x" * 10)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await asyncio.wait_for(reader.read(), 5.0) == b""  # the server hung up
        assert 0.25 <= loop.time() - started < 3.0
        assert counts["errors"] == (1 if sent == "half a frame" else 0)
        assert counts["frames_in"] == 0
    finally:
        writer.close()
        await server.close()
