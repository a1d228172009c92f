"""Libp2pTransport over real in-process hosts: both lanes, stream reuse, caps, failures, garbage."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from p2p.bridge import Portal
from p2p.framing import encode_frame, encode_preamble
from p2p.host import HostConfig, P2PHost
from p2p.identity import NodeKey
from p2p.lane_support import LaneLimits
from p2p.libp2p_transport import Libp2pTransport
from p2p.transport import MAX_HEAD_BYTES, Frame, TransportError
from tests.p2p.conftest import MakeHost, wait_until

pytestmark = pytest.mark.timeout(60)
PROTO = "/tessera/test/1"
MiB = 1024 * 1024
FAST = LaneLimits(linger_s=0.2)


@dataclass
class Recorder:
    """A FrameHandler: refuses heads starting with b"refuse", answers others with a body hash.

    Frames whose head starts with b"slow" are answered only once `gate` is set.
    """

    gate: asyncio.Event | None = None
    checked: list[tuple[str | None, bytes, int]] = field(default_factory=list)
    handled: list[tuple[str | None, Frame]] = field(default_factory=list)

    def check_head(self, peer: str | None, head: bytes, body_len: int) -> Frame | None:
        self.checked.append((peer, head, body_len))
        return Frame(b"refused:" + head) if head.startswith(b"refuse") else None

    async def handle(self, peer: str | None, frame: Frame) -> Frame:
        self.handled.append((peer, frame))
        if self.gate is not None and frame.head.startswith(b"slow"):
            await self.gate.wait()
        return Frame(b"re:" + frame.head, hashlib.sha256(frame.body).digest())


@dataclass
class Node:
    host: P2PHost
    transport: Libp2pTransport
    handler: Recorder

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    @property
    def counters(self) -> dict[str, int]:
        return self.transport.counters

    async def ask(self, other: Node, frame: Frame, timeout: float = 10.0) -> Frame:
        return await self.transport.request(other.peer_id, PROTO, frame, timeout=timeout)


MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(make_host: MakeHost) -> AsyncIterator[MakeNode]:
    transports: list[Libp2pTransport] = []

    async def make(*, limits: LaneLimits = FAST, max_body: int | None = None, **config: Any):
        host = await make_host(**config)
        transport = Libp2pTransport(host, limits=limits)
        transports.append(transport)
        handler = Recorder()
        if max_body is None:
            transport.serve(PROTO, handler)
        else:
            transport.serve(PROTO, handler, max_body=max_body)
        await transport.start()
        return Node(host, transport, handler)

    yield make
    await asyncio.gather(*(t.close() for t in transports))


async def pair(
    make_node: MakeNode, client_config: dict[str, Any] | None = None, **server_config: Any
) -> tuple[Node, Node]:
    client, server = await make_node(**(client_config or {})), await make_node(**server_config)
    await client.host.connect(server.host.listen_addrs[0])
    return client, server


def digest(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


async def test_request_reply_over_libp2p_with_authenticated_peers(make_node: MakeNode):
    a, b, c = await make_node(), await make_node(), await make_node()
    for client in (a, c):
        await client.host.connect(b.host.listen_addrs[0])
    replies = await asyncio.gather(
        a.ask(b, Frame(b"from-a", b"x" * 1000)), c.ask(b, Frame(b"from-c", b"y"))
    )
    assert list(replies) == [
        Frame(b"re:from-a", digest(b"x" * 1000)),
        Frame(b"re:from-c", digest(b"y")),
    ]
    assert sorted((p, f.head) for p, f in b.handler.handled) == sorted(
        [(a.peer_id, b"from-a"), (c.peer_id, b"from-c")]
    )
    assert b.counters["frames_in"] == 2
    await wait_until(lambda: b.counters["frames_out"] == 2)  # counted once the write returned
    assert a.counters["bulk_connections_opened"] == 0


async def test_sequential_requests_reuse_one_stream(make_node: MakeNode):
    a, b = await pair(make_node)
    for i in range(10):
        assert (await a.ask(b, Frame(b"%d" % i, b"body"))).head == b"re:%d" % i
    assert a.counters["streams_opened"] == 1
    assert b.counters["frames_in"] == 10


async def test_concurrent_requests_take_one_stream_each(make_node: MakeNode):
    a, b = await pair(make_node)
    b.handler.gate = asyncio.Event()
    pending = [asyncio.create_task(a.ask(b, Frame(b"slow%d" % i))) for i in range(3)]
    await wait_until(lambda: len(b.handler.handled) == 3)
    b.handler.gate.set()
    replies = await asyncio.gather(*pending)
    assert [r.head for r in replies] == [b"re:slow0", b"re:slow1", b"re:slow2"]
    for _ in range(3):
        await a.ask(b, Frame(b"again"))
    assert a.counters["streams_opened"] == 3


async def test_small_frames_take_the_bulk_lane_by_default(make_node: MakeNode):
    a, b = await pair(make_node)
    small = await a.ask(b, Frame(b"small", b"s"))  # before the bulk address is known: libp2p
    a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    tiny = [await a.ask(b, Frame(b"tiny", b"t")) for _ in range(3)]
    assert small == Frame(b"re:small", digest(b"s"))
    assert tiny == [Frame(b"re:tiny", digest(b"t"))] * 3
    assert [p for p, _ in b.handler.handled] == [a.peer_id, None, None, None]
    assert a.counters["bulk_connections_opened"] == 1  # one pooled connection for all three
    assert a.counters["streams_opened"] == 1


async def test_large_bodies_take_the_bulk_lane(make_node: MakeNode):
    a, b = await pair(make_node, {"bulk_threshold_bytes": 256 * 1024})
    a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    body = random.randbytes(8 * MiB)
    reply = await a.ask(b, Frame(b"big", memoryview(body)))
    small = await a.ask(b, Frame(b"small", b"s"))
    assert reply == Frame(b"re:big", digest(body))
    assert small == Frame(b"re:small", digest(b"s"))
    assert [(p, f.head) for p, f in b.handler.handled] == [(None, b"big"), (a.peer_id, b"small")]
    assert a.counters["bulk_connections_opened"] == 1
    assert a.counters["streams_opened"] == 1  # only the small one went over libp2p
    assert b.counters["bytes_in"] > 8 * MiB


async def test_a_pull_with_a_large_reply_takes_the_bulk_lane(make_node: MakeNode):
    a, b = await pair(make_node, {"bulk_threshold_bytes": 256 * 1024})
    a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    pull = await a.transport.request(b.peer_id, PROTO, Frame(b"pull", b"p"), timeout=10, bulk=True)
    plain = await a.ask(b, Frame(b"plain", b"p"))
    assert (pull, plain) == (Frame(b"re:pull", digest(b"p")), Frame(b"re:plain", digest(b"p")))
    assert [(p, f.head) for p, f in b.handler.handled] == [(None, b"pull"), (a.peer_id, b"plain")]
    assert a.counters["bulk_connections_opened"] == 1
    assert a.counters["streams_opened"] == 1  # only the plain one went over libp2p


@pytest.mark.parametrize("lane", ["libp2p", "bulk"])
async def test_refusal_is_answered_without_reading_the_body(make_node: MakeNode, lane: str):
    a, b = await pair(make_node)
    if lane == "bulk":
        a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    body = bytes(8 * MiB)
    assert await a.ask(b, Frame(b"refuse-me", body)) == Frame(b"refused:refuse-me")
    assert b.handler.checked == [(None if lane == "bulk" else a.peer_id, b"refuse-me", len(body))]
    assert b.handler.handled == []
    assert b.counters["refused_by_handler"] == 1
    assert b.counters["bytes_in"] < len(body) // 2
    assert (await a.ask(b, Frame(b"next", body))).head == b"re:next"


@pytest.mark.parametrize("lane", ["libp2p", "bulk"])
async def test_body_over_max_body_is_refused(make_node: MakeNode, lane: str):
    a, b = await pair(make_node, max_body=MiB)
    if lane == "bulk":
        a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    with pytest.raises(TransportError, match="refused the frame: too_large: frame of .* exceeds"):
        await a.ask(b, Frame(b"too-big", bytes(MiB + 1)))
    assert b.handler.checked == []
    assert b.counters["refused_too_large"] == 1
    assert (await a.ask(b, Frame(b"fits", bytes(MiB)))).head == b"re:fits"


async def test_bodies_over_the_per_peer_inflight_cap_are_refused(make_node: MakeNode):
    a, b = await pair(make_node, peer_inflight_bytes=3 * MiB)
    b.handler.gate = asyncio.Event()
    first = asyncio.create_task(a.ask(b, Frame(b"slow", bytes(2 * MiB))))
    await wait_until(lambda: len(b.handler.handled) == 1)
    with pytest.raises(TransportError, match="in-flight cap"):
        await a.ask(b, Frame(b"second", bytes(2 * MiB)))
    assert (await a.ask(b, Frame(b"small", bytes(MiB)))).head == b"re:small"
    b.handler.gate.set()
    assert (await first).head == b"re:slow"
    assert b.counters["refused_mem_cap"] == 1
    assert (await a.ask(b, Frame(b"third", bytes(2 * MiB)))).head == b"re:third"


async def test_unknown_protocol_is_a_clear_error(make_node: MakeNode):
    a, b = await pair(make_node)
    with pytest.raises(TransportError, match="does not serve /tessera/nothing/1"):
        await a.transport.request(b.peer_id, "/tessera/nothing/1", Frame(b"h"), timeout=5)
    a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    with pytest.raises(TransportError, match="no handler for protocol '/tessera/nothing/1'"):
        await a.transport.request(
            b.peer_id, "/tessera/nothing/1", Frame(b"h", bytes(MiB)), timeout=5
        )


async def test_serve_after_start_registers_the_protocol(make_node: MakeNode):
    a, b = await pair(make_node)
    late = Recorder()
    b.transport.serve("/tessera/late/1", late)
    reply = await a.transport.request(b.peer_id, "/tessera/late/1", Frame(b"hi"), timeout=5)
    assert reply.head == b"re:hi" and len(late.handled) == 1


async def test_request_to_a_stopped_peer_fails(make_node: MakeNode):
    a, b = await pair(make_node)
    a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    await a.ask(b, Frame(b"warm", b""))
    await b.transport.close()
    await b.host.stop()
    with pytest.raises(TransportError):
        await a.ask(b, Frame(b"again", b""), timeout=5)
    with pytest.raises(TransportError):
        await a.ask(b, Frame(b"bulk", bytes(MiB)), timeout=5)


async def test_timeout_raises_and_the_transport_recovers(make_node: MakeNode):
    a, b = await pair(make_node)
    b.handler.gate = asyncio.Event()
    with pytest.raises(TransportError, match="timed out"):
        await a.ask(b, Frame(b"slow"), timeout=0.3)
    a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    with pytest.raises(TransportError, match="timed out"):
        await a.ask(b, Frame(b"slow-bulk", bytes(MiB)), timeout=0.3)
    b.handler.gate.set()
    assert (await a.ask(b, Frame(b"fast"))).head == b"re:fast"
    assert (await a.ask(b, Frame(b"fast-bulk", bytes(MiB)))).head == b"re:fast-bulk"
    assert a.counters["errors"] == 2


async def test_unreachable_bulk_lane_falls_back_to_libp2p(make_node: MakeNode):
    a, b = await pair(make_node)
    a.transport.set_bulk_address(b.peer_id, "127.0.0.1:1")
    assert (await a.ask(b, Frame(b"big", bytes(MiB)))).head == b"re:big"
    assert b.handler.handled[0][0] == a.peer_id


def test_host_config_checks_the_bulk_lane_settings():
    assert HostConfig(bulk_listen="").bulk_listen == ""
    assert HostConfig(bulk_listen="[::1]:0").bulk_listen == "[::1]:0"
    for bad in ({"bulk_listen": "localhost"}, {"bulk_threshold_bytes": -1}):
        with pytest.raises(ValueError):
            HostConfig(**bad)


async def test_a_node_without_bulk_lane_gets_everything_over_libp2p(make_node: MakeNode):
    a, b = await pair(make_node, bulk_listen="")
    assert b.transport.bulk_address == ""
    a.transport.set_bulk_address(b.peer_id, b.transport.bulk_address)
    assert (await a.ask(b, Frame(b"big", bytes(MiB)))).head == b"re:big"
    assert b.handler.handled[0][0] == a.peer_id
    assert a.counters["bulk_connections_opened"] == 0


async def test_close_leaves_no_threads_or_tasks() -> None:
    def ours() -> set[threading.Thread]:  # the loop's executor threads are not ours
        return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}

    threads_before = ours()
    hosts = [P2PHost(NodeKey.generate(), HostConfig()) for _ in range(2)]
    transports = [Libp2pTransport(h, limits=FAST) for h in hosts]
    handler = Recorder(gate=asyncio.Event())
    for host, transport in zip(hosts, transports, strict=True):
        await host.start()
        transport.serve(PROTO, handler)
        await transport.start()
    await hosts[0].connect(hosts[1].listen_addrs[0])
    transports[0].set_bulk_address(hosts[1].peer_id, transports[1].bulk_address)
    pending = [
        asyncio.create_task(
            transports[0].request(hosts[1].peer_id, PROTO, Frame(b"slow", body), timeout=30)
        )
        for body in (b"", bytes(MiB))
    ]
    await wait_until(lambda: len(handler.handled) == 2)
    for transport in transports:
        await transport.close()
    for host in hosts:
        await host.stop()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, TransportError) for r in results), results
    assert ours() == threads_before
    current = asyncio.current_task()
    await wait_until(lambda: asyncio.all_tasks() == {current})


async def test_garbage_over_libp2p_leaves_the_server_serving(make_node: MakeNode):
    a, b = await pair(make_node, max_body=64 * 1024)
    frames = await a.host.run_with_host(blast, b.peer_id, 10_000, 7)
    assert frames == 10_000
    counters = b.counters
    assert counters["frames_in"] > 1_000
    assert counters["refused_too_large"] > 0 and counters["refused_by_handler"] > 0
    assert counters["errors"] > 0
    assert b.host.running
    assert (await a.ask(b, Frame(b"still", b"there"))).head == b"re:still"


async def blast(host: IHost, _portal: Portal, peer_id: str, count: int, seed: int) -> int:
    """Write `count` garbage and well-formed frames on raw streams; returns the frames sent.

    Nothing is cancelled here: a trio cancellation inside a libp2p write would break the
    connection's Noise session (see p2p.libp2p_streams). Each stream ends with our FIN.
    """
    rng = random.Random(seed)
    sent = 0
    while sent < count:
        stream = await host.new_stream(ID.from_base58(peer_id), [TProtocol(PROTO)])
        ended = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, stream, ended)
            sent += await write_garbage(stream, rng, count - sent, ended)
            with contextlib.suppress(Exception):
                await stream.close()
    return sent


async def drain(stream: INetStream, ended: trio.Event) -> None:
    """Read and drop replies until the server ends the stream, then reset it."""
    with contextlib.suppress(Exception):
        while await stream.read(1 << 16):
            pass
    ended.set()
    await stream.reset()


async def write_garbage(
    stream: INetStream, rng: random.Random, budget: int, ended: trio.Event
) -> int:
    """Frames until the server ends the stream or an ending kind is drawn; returns how many."""
    sent = 0
    with contextlib.suppress(Exception):
        while sent < budget and not ended.is_set():
            sent += 1
            kind = rng.random()
            head, body = rng.randbytes(rng.randint(0, 40)), rng.randbytes(rng.randint(0, 2000))
            good = encode_frame(Frame(head, body))
            if kind < 0.97:
                await stream.write(good)  # the Recorder refuses the rare head starting b"refuse"
            elif kind < 0.9775:
                await stream.write(rng.randbytes(rng.randint(1, 64)))
            elif kind < 0.985:
                await stream.write(encode_preamble(rng.randint(0, MAX_HEAD_BYTES), 2**63))
            elif kind < 0.9925:
                await stream.write(good[: rng.randint(1, len(good) - 1)])
                return sent
            else:
                await stream.write(encode_frame(Frame(b"refuse" + head, body)))
    return sent
