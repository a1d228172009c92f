"""Across processes: a real endpoint here against a `tessera node` process over libp2p."""

import asyncio
import json
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.blob_server import fetch_blob
from p2p.admission import HotkeyAllowlist
from p2p.binding import HotkeyBinding
from p2p.endpoint import Endpoint
from p2p.host import HostConfig, P2PHost
from p2p.identity import NodeKey
from p2p.libp2p_transport import Libp2pTransport
from p2p.messages import Ack, BlobRequest, Heartbeat, Hello
from p2p.transport import Frame, TransportError
from store import BlobStore, Store, StoreConfig
from tests.node.procs import get_json, run_tessera, tessera, wait_endpoints
from tests.p2p.endpoint_kit import make_hotkey

pytestmark = pytest.mark.integration


@pytest.fixture
async def node_and_client(tmp_path: Path) -> AsyncIterator[tuple[dict[str, Any], Endpoint, Path]]:
    home = tmp_path / "node"
    keygen = run_tessera(
        "keygen",
        "--home",
        str(home),
        "--wallet-name",
        "node",
        "--test-wallet",
        "--wallet-path",
        str(tmp_path / "wallets"),
    )
    assert keygen.returncode == 0, keygen.stderr
    node_hotkey = json.loads((home / "binding.json").read_text())["hotkey"]
    hotkey = make_hotkey(tmp_path / "wallets", "client")
    allow = json.dumps([node_hotkey, hotkey.ss58_address])
    proc = tessera(
        "node",
        "--home",
        str(home),
        "--role",
        "miner",
        "--http",
        "127.0.0.1:0",
        "--set",
        'admission.mode="allowlist"',
        "--set",
        f"admission.hotkeys={allow}",
    )
    endpoints = wait_endpoints(home, proc)
    key = NodeKey.generate()
    host = P2PHost(key, HostConfig(bootstrap=endpoints["p2p"]))
    await host.start()
    transport = Libp2pTransport(host)
    binding = HotkeyBinding.create(hotkey, key.peer_id, ttl_s=600).to_json()
    endpoint = Endpoint(
        key,
        "devnet",
        transport,
        admission=HotkeyAllowlist([node_hotkey]),
        hello=lambda: Hello(roles=["validator"], binding=binding),
    )
    await transport.start()
    await host.connect(endpoints["p2p"][0])
    try:
        yield endpoints, endpoint, home
    finally:
        await transport.close()
        await host.stop()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out


async def test_blob_fetch_and_random_frames_across_processes(node_and_client) -> None:
    endpoints, client, home = node_and_client
    node_id = endpoints["peer_id"]
    session = await client.hello(node_id)
    assert session.roles == ("miner",) and session.hotkey is not None

    with Store.open(home / "store", StoreConfig()) as store:  # LMDB: a second process may write
        digest = BlobStore(store).put(b"activation inputs " * 4096)
    assert await fetch_blob(client, node_id, digest, timeout=10) == b"activation inputs " * 4096

    rng = random.Random(7)
    protocols = [Hello.protocol, Heartbeat.protocol, BlobRequest.protocol]
    transport = client._transport
    outcomes: dict[str, int] = {}

    async def fire(count: int) -> None:
        for _ in range(count):
            head = rng.randbytes(rng.randrange(0, 300))
            frame = Frame(head=head, body=rng.randbytes(rng.randrange(0, 64)))
            try:
                protocol = rng.choice(protocols)
                reply = await transport.request(node_id, protocol, frame, timeout=10)
                kind = "refused" if reply.head else "empty"
            except TransportError:
                kind = "transport_error"
            outcomes[kind] = outcomes.get(kind, 0) + 1

    await asyncio.gather(*(fire(125) for _ in range(8)))  # 1,000 random frames
    assert sum(outcomes.values()) == 1_000 and outcomes.get("refused", 0) > 900

    # the node still serves: a well-formed request, its status page and its counters
    assert await fetch_blob(client, node_id, digest, timeout=10) == b"activation inputs " * 4096
    status = get_json(f"{endpoints['http']}/status")
    assert status["refusals"]["malformed"] >= outcomes["refused"]
    assert isinstance(await client.request(node_id, Heartbeat(window=0)), Ack)
