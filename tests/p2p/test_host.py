"""Real libp2p hosts in one process: peer exchange mesh, identify/ping, Noise only, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

import msgpack
import pytest
import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.custom_types import TProtocol
from libp2p.host.ping import PingService
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL_ID
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.peer.id import ID
from libp2p.utils.varint import read_length_prefixed_protobuf
from multiaddr import Multiaddr

from p2p.bridge import Portal
from p2p.errors import DialError, HostError
from p2p.host import HostConfig, P2PHost
from p2p.identity import NodeKey
from p2p.peer_exchange import PROTOCOL_ID as PEERX_PROTOCOL_ID
from tests.p2p.conftest import MakeHost, peer_ids, wait_until

pytestmark = pytest.mark.timeout(30)


def tcp_part(addr: str) -> str:
    return addr.split("/p2p/")[0]


@contextlib.asynccontextmanager
async def maintaining(*hosts: P2PHost):
    tasks = [asyncio.create_task(h.maintain()) for h in hosts]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10.0)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results


async def test_three_hosts_mesh_through_peer_exchange(make_host: MakeHost) -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    a = await make_host(keys[0])
    b = await make_host(keys[1], bootstrap=[a.listen_addrs[0]])
    c = await make_host(keys[2], bootstrap=[a.listen_addrs[0]])
    hosts = [a, b, c]
    assert [h.peer_id for h in hosts] == [k.peer_id for k in keys]
    for h in hosts:
        assert len(h.listen_addrs) == 1
        assert h.listen_addrs[0].startswith("/ip4/127.0.0.1/tcp/")
        assert h.listen_addrs[0].endswith(f"/p2p/{h.peer_id}")

    async with maintaining(*hosts):
        await wait_until(
            lambda: all(
                peer_ids(h.connected_peers()) == {o.peer_id for o in hosts} - {h.peer_id}
                for h in hosts
            ),
            within_s=5.0,
        )
        # B and C only knew A: they met through peer exchange (a dial learned from A).
        await wait_until(lambda: b.counters["dials_ok"] + c.counters["dials_ok"] >= 3)
    assert b.counters["peerx_ok"] + c.counters["peerx_ok"] >= 1
    by_id = {h.peer_id: h for h in hosts}
    for h in hosts:
        for peer in h.connected_peers():
            assert peer.direction in ("inbound", "outbound")
            assert 0 < peer.connected_since <= time.time()
            assert tcp_part(by_id[peer.peer_id].listen_addrs[0]) in peer.addrs  # dialable
    assert {p.direction for p in b.connected_peers() if p.peer_id == a.peer_id} == {"outbound"}
    assert {p.direction for p in a.connected_peers()} == {"inbound"}


async def test_five_node_devnet_bootstrapping_to_node_zero_fully_meshes(
    make_host: MakeHost,
) -> None:
    zero = await make_host()
    hosts = [zero] + [await make_host(bootstrap=zero.listen_addrs) for _ in range(4)]
    started = time.monotonic()
    async with maintaining(*hosts):
        await wait_until(lambda: all(len(h.connected_peers()) == 4 for h in hosts), within_s=5.0)
    assert time.monotonic() - started < 5.0


async def test_peer_listening_on_all_interfaces_is_learned_at_a_dialable_address(
    make_host: MakeHost,
) -> None:
    a = await make_host()
    wild = await make_host(listen=["/ip4/0.0.0.0/tcp/0"])
    b = await make_host()
    assert wild.listen_addrs[0].startswith("/ip4/0.0.0.0/tcp/")
    await wild.connect(a.listen_addrs[0])
    await b.connect(a.listen_addrs[0])
    port = tcp_part(wild.listen_addrs[0]).rsplit("/", 1)[1]
    expected = f"/ip4/127.0.0.1/tcp/{port}"
    await wait_until(
        lambda: any(expected in p.addrs for p in a.connected_peers() if p.peer_id == wild.peer_id)
    )
    assert await b.exchange_once() == 1
    assert wild.peer_id in peer_ids(b.connected_peers())


async def _identify(host: IHost, portal: Portal, peer_id: str) -> Identify:
    stream = await host.new_stream(ID.from_base58(peer_id), [IDENTIFY_PROTOCOL_ID])
    data = await read_length_prefixed_protobuf(stream, use_varint_format=True)
    await stream.close()
    message = Identify()
    message.ParseFromString(data)
    return message


async def _libp2p_ping(host: IHost, portal: Portal, peer_id: str) -> list[int]:
    rtts: list[int] = await PingService(host).ping(ID.from_base58(peer_id), 3)
    return rtts


async def test_identify_and_ping_answer_standard_clients(make_host: MakeHost) -> None:
    a, b = await make_host(), await make_host()
    assert await a.connect(b.listen_addrs[0]) == b.peer_id

    reply = await a.run_with_host(_identify, b.peer_id)
    assert str(ID.from_pubkey(deserialize_public_key(reply.public_key))) == b.peer_id
    listen = [str(Multiaddr(raw)) for raw in reply.listen_addrs]
    assert any(addr.startswith(tcp_part(b.listen_addrs[0])) for addr in listen)
    assert {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", PEERX_PROTOCOL_ID} <= set(reply.protocols)

    rtts = await a.run_with_host(_libp2p_ping, b.peer_id)
    assert len(rtts) == 3 and all(0 <= r < 1000 for r in rtts)
    assert 0 < await b.ping(a.peer_id) < 1.0


async def _plaintext_host(nursery: trio.Nursery, portal: Portal, box: list[IHost]) -> None:
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

    key_pair = create_new_key_pair(NodeKey.generate().seed)
    host = new_host(
        key_pair=key_pair, sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)}
    )
    addrs = [Multiaddr("/ip4/127.0.0.1/tcp/0")]

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with host.run(addrs):
            task_status.started()
            await trio.sleep_forever()

    await nursery.start(run)
    box.append(host)


async def test_plaintext_only_dialer_cannot_connect(make_host: MakeHost) -> None:
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from p2p.bridge import TrioThread

    ours = await make_host()
    box: list[IHost] = []
    thread = TrioThread(name="plaintext-dialer")
    await thread.start(lambda nursery, portal: _plaintext_host(nursery, portal, box))
    try:
        plain = box[0]

        async def dial() -> None:
            await plain.connect(info_from_p2p_addr(Multiaddr(ours.listen_addrs[0])))

        with pytest.raises(Exception, match="unable to connect"):
            await thread.run_in_trio(dial)
        assert await thread.run_in_trio(_connected_count, plain) == 0
        await asyncio.sleep(0.1)
        assert ours.connected_peers() == []
        # ...and our host refuses to speak plaintext when it dials out, too.
        plain_addr = f"{plain.get_addrs()[0]}"
        with pytest.raises(DialError):
            await ours.connect(plain_addr)
    finally:
        await thread.stop(5.0)


async def _connected_count(host: IHost) -> int:
    return len(host.get_connected_peers())


async def _connection_count(host: IHost, portal: Portal, peer_id: str) -> int:
    return len(host.get_network().get_connections(ID.from_base58(peer_id)))


async def test_connections_are_reused(make_host: MakeHost) -> None:
    a, b = await make_host(), await make_host()
    await a.connect(b.listen_addrs[0])
    started = time.monotonic()
    for _ in range(3):
        assert await a.connect(b.listen_addrs[0]) == b.peer_id
    assert time.monotonic() - started < 0.2  # no new dial: each would cost >= 250 ms
    assert await a.run_with_host(_connection_count, b.peer_id) == 1
    assert await b.exchange_once() == 0  # nothing new to learn, nothing re-dialed
    assert await a.run_with_host(_connection_count, b.peer_id) == 1


@pytest.mark.parametrize(
    ("addr", "error"),
    [
        ("not a multiaddr", HostError),
        ("/ip4/127.0.0.1/tcp/1", HostError),  # no /p2p/<id>
        (f"/ip4/127.0.0.1/tcp/1/p2p/{NodeKey.generate().peer_id}", DialError),  # refused
    ],
)
async def test_connect_failures_raise_host_error(
    make_host: MakeHost, addr: str, error: type
) -> None:
    host = await make_host()
    with pytest.raises(error) as info:
        await host.connect(addr)
    assert str(info.value)
    assert host.counters["dials_failed"] == 1


async def test_connect_to_wrong_peer_id_or_self_fails(make_host: MakeHost) -> None:
    a, b = await make_host(), await make_host()
    wrong = f"{tcp_part(b.listen_addrs[0])}/p2p/{NodeKey.generate().peer_id}"
    with pytest.raises(DialError):
        await a.connect(wrong)
    with pytest.raises(DialError, match="own peer id"):
        await a.connect(a.listen_addrs[0])
    assert a.connected_peers() == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_bootstrap_retries_with_backoff_and_redials_after_loss(make_host: MakeHost) -> None:
    key, port = NodeKey.generate(), _free_port()
    listen = f"/ip4/127.0.0.1/tcp/{port}"
    b = await make_host(bootstrap=[f"{listen}/p2p/{key.peer_id}"], backoff_max_s=0.4)
    async with maintaining(b):
        await wait_until(lambda: b.counters["dials_failed"] >= 3, within_s=15.0)
        a = await make_host(key, listen=[listen])  # the bootstrap node comes up late
        await wait_until(lambda: peer_ids(b.connected_peers()) == {a.peer_id}, within_s=15.0)
        await a.stop()
        await wait_until(lambda: b.connected_peers() == [], within_s=15.0)
        a2 = await make_host(key, listen=[listen])  # ...restarts, and is re-dialed
        await wait_until(lambda: peer_ids(b.connected_peers()) == {a2.peer_id}, within_s=15.0)


async def _install_rogue_handler(host: IHost, portal: Portal, reply: bytes) -> None:
    async def rogue(stream: INetStream) -> None:
        await stream.read(64)
        await stream.write(reply)
        await stream.close()

    host.set_stream_handler(TProtocol(PEERX_PROTOCOL_ID), rogue)


@pytest.mark.parametrize(
    "reply",
    [
        b"\x00\x00\x00\x03abc",  # framed, not msgpack
        (2**31).to_bytes(4, "big") + b"x",  # over the frame cap
        b"\x00\x00\x00\x05" + msgpack.packb({"peer_id": 1}) + b"\x00",  # wrong shape
    ],
)
async def test_malformed_peer_exchange_responses_are_counted(
    make_host: MakeHost, reply: bytes
) -> None:
    rogue, good = await make_host(), await make_host()
    await rogue.run_with_host(_install_rogue_handler, reply)
    await good.connect(rogue.listen_addrs[0])
    assert await good.exchange_once() == 0
    assert good.counters["peerx_malformed"] == 1
    assert good.counters["peerx_ok"] == 0
    assert peer_ids(good.connected_peers()) == {rogue.peer_id}


async def test_stop_ends_threads_and_maintain_cancels_cleanly(make_host: MakeHost) -> None:
    a = await make_host()
    b = await make_host(bootstrap=a.listen_addrs)
    names = {f"libp2p-{h.peer_id[-8:]}" for h in (a, b)}
    assert names <= {t.name for t in threading.enumerate()}
    async with maintaining(a, b):
        await wait_until(lambda: len(b.connected_peers()) == 1)
    started = time.monotonic()
    await asyncio.gather(a.stop(2.0), b.stop(2.0))
    assert time.monotonic() - started < 2.0
    assert not names & {t.name for t in threading.enumerate()}
    assert not a.running and a.connected_peers() == [] and a.listen_addrs == []
    with pytest.raises(HostError, match="not running"):
        await a.connect(b.peer_id)
    with pytest.raises(HostError, match="not running"):
        await a.maintain()


async def test_start_failures_raise_host_error(make_host: MakeHost) -> None:
    a = await make_host()
    taken = tcp_part(a.listen_addrs[0])
    for listen in (taken, "/ip4/127.0.0.1/udp/1"):
        host = P2PHost(NodeKey.generate(), HostConfig(listen=[listen]))
        with pytest.raises(HostError, match="cannot listen on"):
            await host.start()
        assert not host.running and host.listen_addrs == []
    with pytest.raises(HostError, match="already started"):
        await a.start()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"listen": []},
        {"listen": ["127.0.0.1:4001"]},
        {"bootstrap": ["/ip4/127.0.0.1/tcp/4001"]},
        {"dial_timeout_s": 0},
        {"backoff_initial_s": 5, "backoff_max_s": 1},
        {"max_peers": 0},
    ],
)
def test_host_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        HostConfig(**kwargs)  # type: ignore[arg-type]


async def _crash_trio(host: IHost, portal: Portal) -> None:
    raise SystemExit("simulated crash of the trio thread")


async def test_maintain_raises_host_error_when_libp2p_thread_dies(make_host: MakeHost) -> None:
    host = await make_host()
    task = asyncio.create_task(host.maintain())
    await asyncio.sleep(0.05)
    with pytest.raises(HostError):
        await host.run_with_host(_crash_trio)
    with pytest.raises(HostError, match="stopped unexpectedly"):
        await asyncio.wait_for(task, 2.0)
    assert not host.running and host.connected_peers() == []
