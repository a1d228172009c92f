"""Three bound nodes in one loop over real libp2p: admission, activations on both lanes, blobs."""

import asyncio
import json

import aiohttp
import pytest
import torch

from node.blob_server import fetch_blob
from node.node_service import NodeService
from p2p.admission import PeerSession
from p2p.messages import Ack, Activation, Message
from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload
from p2p.transport import Frame, TransportError
from store import BlobStore
from tests.node.conftest import StartNode
from tests.p2p.endpoint_kit import make_hotkey, refusal_reason, resign


@pytest.fixture(scope="module")
def hotkeys(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("wallets")
    return [make_hotkey(path, f"n{i}") for i in range(4)]


async def wait_admitted(nodes: list[NodeService], count: int) -> None:
    for _ in range(150):
        if all(n.endpoint and len(n.endpoint.sessions) >= count for n in nodes):
            return
        await asyncio.sleep(0.1)
    raise AssertionError([len(n.endpoint.sessions) if n.endpoint else None for n in nodes])


async def test_bound_nodes_exchange_activations_and_blobs(start_node: StartNode, hotkeys) -> None:
    allow = {
        "admission.mode": "allowlist",
        "admission.hotkeys": [h.ss58_address for h in hotkeys[:3]],
    }
    a = await start_node("a", ["miner"], hotkey=hotkeys[0], **allow)
    b = await start_node("b", ["miner"], a.p2p_addrs, hotkey=hotkeys[1], **allow)
    c = await start_node("c", ["validator"], a.p2p_addrs, hotkey=hotkeys[2], **allow)
    await wait_admitted([a, b, c], 2)
    assert a.endpoint and b.endpoint and c.endpoint
    assert a.endpoint.sessions[b.endpoint.peer_id].hotkey == hotkeys[1].ss58_address

    got: list[tuple[torch.Tensor, str]] = []

    async def on_activation(msg: Activation, peer: PeerSession) -> Message:
        got.append((msg.tensor.to_torch(), peer.peer_id))
        return Ack()

    a.endpoint.register(Activation, on_activation)
    small, large = torch.randn(4, 16), torch.randn(8, 256, 256)  # 256 B and 2 MiB bodies
    for tensor in (small, large):
        msg = Activation(window=0, batch=1, stage=0, tensor=TensorPayload.from_torch(tensor))
        assert isinstance(await b.endpoint.request(a.endpoint.peer_id, msg), Ack)
    assert torch.equal(got[0][0], small) and torch.equal(got[1][0], large)
    assert {peer for _, peer in got} == {b.endpoint.peer_id}

    assert a.store is not None
    digest = BlobStore(a.store).put(b"merged weights v1" * 1000)
    data = await fetch_blob(c.endpoint, a.endpoint.peer_id, digest, timeout=10)
    assert data == b"merged weights v1" * 1000
    with pytest.raises(Refused) as err:
        await fetch_blob(c.endpoint, a.endpoint.peer_id, "0" * 64, timeout=10)
    assert err.value.reason is Reason.NOT_FOUND

    outsider = await start_node("x", ["miner"], a.p2p_addrs, hotkey=hotkeys[3], **allow)
    assert outsider.endpoint
    for _ in range(100):
        if a.endpoint.peer_id in {p["peer_id"] for p in outsider.peers()["connected"]}:
            break
        await asyncio.sleep(0.1)
    with pytest.raises(Refused) as err:
        await outsider.endpoint.hello(a.endpoint.peer_id)
    assert err.value.reason is Reason.NOT_ALLOWED
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{a.http_url}/metrics") as response:
            metrics = await response.text()
        async with session.get(f"{a.http_url}/status") as response:
            status = json.loads(await response.text())
    assert 'tessera_refusals_total{reason="not_allowed"}' in metrics
    assert 'tessera_greetings_total{event="hello_ok"}' in metrics
    admitted = {p["peer_id"] for p in status["admitted_peers"]}
    assert admitted == {b.endpoint.peer_id, c.endpoint.peer_id}
    assert status["refusals"]["not_allowed"] >= 1


async def test_attack_frames_over_real_libp2p_get_codes(start_node: StartNode, hotkeys) -> None:
    allow = {
        "admission.mode": "allowlist",
        "admission.hotkeys": [h.ss58_address for h in hotkeys[:2]],
    }
    a = await start_node("a", ["miner"], hotkey=hotkeys[0], **allow)
    b = await start_node("b", ["miner"], a.p2p_addrs, hotkey=hotkeys[1], **allow)
    await wait_admitted([a, b], 1)
    assert a.endpoint and b.endpoint

    async def on_activation(msg: Activation, peer: PeerSession) -> Message:
        return Ack()

    a.endpoint.register(Activation, on_activation)
    sender = b.endpoint

    def frame(tensor: torch.Tensor) -> Frame:
        msg = Activation(window=0, batch=0, stage=0, tensor=TensorPayload.from_torch(tensor))
        return sender.seal(msg)[0]

    good = frame(torch.randn(8, 256, 256))  # 2 MiB: travels on the bulk lane
    small = frame(torch.randn(4))
    cases = {
        "bad_signature": Frame(good.head[:-1] + bytes([good.head[-1] ^ 1]), good.body),
        "malformed": Frame(good.head[:40], b""),
        "non_finite": frame(torch.tensor([0.0, float("inf")])),
        "too_large": resign(small, b._key, body_len=300 * 2**20, shape=(75 * 2**20,)),
        "bad_digest": Frame(good.head, bytes(len(good.body))),
        "replay": good,  # its sequence number was spent by the bad_digest attempt
    }
    transport = b.endpoint._transport
    for expected, attack in cases.items():
        try:
            reply = await transport.request(
                a.endpoint.peer_id, Activation.protocol, attack, timeout=10
            )
        except TransportError as exc:  # a lane may refuse an oversized body before the core
            assert expected == "too_large", (expected, exc)
            continue
        assert refusal_reason(reply) == expected
        assert a.endpoint.refusals.counts[expected] >= 1
    ok = await b.endpoint.request(
        a.endpoint.peer_id,
        Activation(
            window=0, batch=1, stage=0, tensor=TensorPayload.from_torch(torch.randn(8, 256, 256))
        ),
    )
    assert isinstance(ok, Ack)
