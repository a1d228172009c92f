"""Session tags between admitted peers: envelopes tagged with the pair's X25519-derived keys on
an unauthenticated channel (as on the bulk lane), every attack still refused with its code."""

import dataclasses

import pytest
import torch

from p2p.endpoint import Endpoint
from p2p.envelope import decode_head, open_frame
from p2p.memory_transport import MemoryNetwork
from p2p.messages import Ack, Activation, Refusal
from p2p.refusals import Refused
from p2p.session_keys import SessionKeys
from p2p.tensors import TensorPayload
from p2p.transport import Frame
from tests.p2p.endpoint_kit import Node, allow, make_hotkey, make_node, refusal_reason


@pytest.fixture(scope="module")
def hotkeys(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("wallets")
    return [make_hotkey(path, f"s{i}") for i in range(3)]


@pytest.fixture
def net(hotkeys):
    network = MemoryNetwork()
    policy = allow(*hotkeys)
    nodes = [make_node(network, hk, policy, authenticated=False) for hk in hotkeys]
    received: list[Activation] = []

    async def on_activation(msg: Activation, _peer: object) -> Ack:
        received.append(msg)
        return Ack()

    for node in nodes:
        node.endpoint.register(Activation, on_activation)
    return network, nodes, received


def activation(batch: int = 0) -> Activation:
    return Activation(
        window=1, batch=batch, stage=0, tensor=TensorPayload.from_torch(torch.ones(4))
    )


async def raw(b: Node, a: Node, frame: Frame) -> Frame:
    return await b.transport.request(a.key.peer_id, Activation.protocol, frame, timeout=5)


async def test_admitted_peers_tag_requests_and_replies_with_their_session_keys(net) -> None:
    _, (a, b, _), received = net
    assert isinstance(await b.endpoint.request(a.key.peer_id, activation()), Ack)  # hello first
    frame, _ = b.endpoint.seal(activation(1), to=a.key.peer_id)
    assert decode_head(frame.head)[0].mac
    reply = await raw(b, a, frame)
    header, _ = decode_head(reply.head)[:2]
    assert header.mac and header.type_id == Ack.type_id
    keys, theirs = b.endpoint.sessions[a.key.peer_id].keys, a.endpoint.sessions[b.key.peer_id].keys
    assert keys is not None and theirs is not None
    assert (keys.send, keys.recv) == (theirs.recv, theirs.send) and keys.send != keys.recv
    open_frame(reply, mac_key=keys.recv)
    with pytest.raises(Refused, match="bad_signature"):
        open_frame(reply)  # a tag proves nothing to a third party
    assert [m.batch for m in received] == [0, 1]
    assert await raw(b, a, frame) is not None and refusal_reason(await raw(b, a, frame)) == "replay"


async def test_forged_and_tampered_tags_are_refused(net) -> None:
    _, (a, b, c), received = net
    for peer in (b, c):
        await peer.endpoint.hello(a.key.peer_id)
    good, _ = b.endpoint.seal(activation(), to=a.key.peer_id)
    flipped = Frame(good.head[:-1] + bytes([good.head[-1] ^ 1]), good.body)
    assert refusal_reason(await raw(b, a, flipped)) == "bad_signature"
    # c tags a frame claiming to come from b with its own session key with a
    impostor, _ = c.endpoint.seal(activation(), to=a.key.peer_id)
    _, part, tag = decode_head(impostor.head)
    as_b = Frame(part.replace(c.key.peer_id.encode(), b.key.peer_id.encode()) + tag, impostor.body)
    assert decode_head(as_b.head)[0].sender == b.key.peer_id
    assert refusal_reason(await raw(c, a, as_b)) == "bad_signature"
    tampered = Frame(good.head, bytes([good.body[0] ^ 1]) + bytes(good.body[1:]))
    assert refusal_reason(await raw(b, a, tampered)) == "bad_digest"
    assert received == []
    fresh, _ = b.endpoint.seal(activation(), to=a.key.peer_id)  # `good`'s seq was spent above
    assert refusal_reason(await raw(b, a, fresh)) is None and len(received) == 1


async def test_hello_welcome_refusals_and_statements_stay_signed(net) -> None:
    _, (a, b, _), _ = net
    await b.endpoint.hello(a.key.peer_id)
    statement = b.endpoint.statement(Ack())
    open_frame(Frame(statement, b""), sender=b.key.peer_id)  # anyone can check it
    refusal, _ = b.endpoint.seal(Refusal(reason="stale"), to=a.key.peer_id)
    hello, _ = b.endpoint.seal(b.endpoint._my_hello(), to=a.key.peer_id)
    assert not decode_head(refusal.head)[0].mac and not decode_head(hello.head)[0].mac


async def test_a_tagged_frame_from_a_stranger_is_refused_as_unknown(net, hotkeys) -> None:
    _, (a, b, _), _ = net
    await b.endpoint.hello(a.key.peer_id)
    tagged, _ = b.endpoint.seal(activation(), to=a.key.peer_id)
    a.endpoint.sessions.pop(b.key.peer_id)  # a forgot b (restarted)
    assert refusal_reason(await raw(b, a, tagged)) == "unknown_sender"


async def test_a_request_refused_by_a_peer_that_forgot_us_greets_again_and_goes_through(
    net,
) -> None:
    _, (a, b, _), received = net
    await b.endpoint.hello(a.key.peer_id)
    a.endpoint.sessions.pop(b.key.peer_id)  # a restarted, or has not taken b's Welcome yet
    assert isinstance(await b.endpoint.request(a.key.peer_id, activation(3)), Ack)
    assert b.endpoint.rehellos == 1 and b.key.peer_id in a.endpoint.sessions
    assert [m.batch for m in received] == [3]


async def test_a_peer_without_a_session_key_is_answered_with_signatures(net) -> None:
    _, (a, b, _), received = net
    b.endpoint._secret = _NoSessions()  # a peer without session keys
    assert isinstance(await b.endpoint.request(a.key.peer_id, activation()), Ack)
    assert a.endpoint.sessions[b.key.peer_id].keys is None
    frame, _ = b.endpoint.seal(activation(1), to=a.key.peer_id)
    assert not decode_head(frame.head)[0].mac
    reply = await raw(b, a, frame)
    assert not decode_head(reply.head)[0].mac
    open_frame(reply)
    assert len(received) == 2


async def test_a_restarted_peer_gets_new_keys_and_old_tags_stop_working(net, hotkeys) -> None:
    _, (a, b, _), received = net
    await b.endpoint.hello(a.key.peer_id)
    old, _ = b.endpoint.seal(activation(7), to=a.key.peer_id)
    before = a.endpoint.sessions[b.key.peer_id].keys
    reborn = Endpoint(
        b.key,
        b.endpoint.run,
        b.transport,
        admission=b.endpoint.admission,
        hello=b.endpoint._hello,
    )
    reborn.register(Activation, lambda msg, peer: _ack())
    await reborn.hello(a.key.peer_id)
    assert a.endpoint.sessions[b.key.peer_id].keys != before
    assert refusal_reason(await raw(b, a, old)) == "bad_signature"
    assert isinstance(await reborn.request(a.key.peer_id, activation(8)), Ack)
    assert reborn.rehellos == 0
    assert [m.batch for m in received] == [8]


async def test_a_tag_refused_for_stale_keys_greets_again_and_goes_through(net) -> None:
    _, (a, b, _), received = net
    await b.endpoint.hello(a.key.peer_id)
    session = a.endpoint.sessions[b.key.peer_id]
    assert session.keys is not None  # a holds keys of an earlier b, as after b restarted
    stale = SessionKeys(send=bytes(32), recv=bytes(32))
    a.endpoint.sessions[b.key.peer_id] = dataclasses.replace(session, keys=stale)
    assert isinstance(await b.endpoint.request(a.key.peer_id, activation(9)), Ack)
    assert b.endpoint.rehellos == 1 and a.endpoint.sessions[b.key.peer_id].keys == session.keys
    assert [m.batch for m in received] == [9]


class _NoSessions:
    public_hex = ""

    def keys_with(self, *_: str) -> None:
        return None


async def _ack() -> Ack:
    return Ack()
