"""Protocol core on the memory transport: typed exchange, admission, and every refusal code."""

import array
import dataclasses
import os
import time
import zlib

import msgpack
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from p2p.admission import PeerSession
from p2p.body_codec import deflate
from p2p.envelope import DOMAIN, SIG_LEN, Header, MalformedMessage, decode_head, digest, seal
from p2p.identity import NodeKey
from p2p.memory_transport import MemoryNetwork
from p2p.messages import Ack, Activation, BlobReply, BlobRequest, Gradient, Hello, Message
from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload
from p2p.transport import Frame
from store import MapFullError
from tests.p2p.endpoint_kit import Node, allow, make_hotkey, make_node, refusal_reason, resign


@pytest.fixture(scope="module")
def hotkeys(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("wallets")
    return [make_hotkey(path, f"w{i}") for i in range(4)]


@pytest.fixture
def trio_net(hotkeys):
    network = MemoryNetwork()
    policy = allow(*hotkeys[:3])
    nodes = [make_node(network, hk, policy) for hk in hotkeys[:3]]
    received: list[tuple[Message, PeerSession]] = []

    async def on_activation(msg: Activation, peer: PeerSession) -> Message:
        received.append((msg, peer))
        return Ack()

    for node in nodes:
        node.endpoint.register(Activation, on_activation)
    return network, nodes, received


def activation(tensor: torch.Tensor, batch: int = 0) -> Activation:
    return Activation(window=1, batch=batch, stage=0, tensor=TensorPayload.from_torch(tensor))


async def test_signed_activation_round_trip_admits_both_ways(trio_net) -> None:
    _, (a, b, c), received = trio_net
    x = torch.randn(2, 8, 16)
    reply = await b.endpoint.request(a.key.peer_id, activation(x))
    assert isinstance(reply, Ack)
    msg, peer = received[0]
    assert torch.equal(msg.tensor.to_torch(), x)
    assert peer.peer_id == b.key.peer_id and peer.hotkey == b.hotkey and peer.roles == ("miner",)
    assert b.key.peer_id in a.endpoint.sessions and a.key.peer_id in b.endpoint.sessions
    assert b.transport.bulk_addresses[a.key.peer_id] == "127.0.0.1:9"
    await c.endpoint.request(b.key.peer_id, activation(torch.ones(3, 4), batch=2))
    assert len(received) == 2


async def test_blob_fetch_by_digest(trio_net) -> None:
    _, (a, b, _), _ = trio_net
    blobs = {digest(b"weights-v1").hex(): b"weights-v1"}

    async def on_blob(msg: BlobRequest, peer: PeerSession) -> Message:
        data = blobs.get(msg.digest)
        if data is None:
            raise Refused(Reason.NOT_FOUND, msg.digest)
        return BlobReply(tensor=TensorPayload("uint8", (len(data),), data))

    a.endpoint.register(BlobRequest, on_blob)
    reply = await b.endpoint.request(a.key.peer_id, BlobRequest(digest=digest(b"weights-v1").hex()))
    assert isinstance(reply, BlobReply) and bytes(reply.tensor.data) == b"weights-v1"
    with pytest.raises(Refused) as err:
        await b.endpoint.request(a.key.peer_id, BlobRequest(digest="00" * 32))
    assert err.value.reason is Reason.NOT_FOUND


async def test_typed_memoryview_body_is_sized_in_bytes(trio_net) -> None:
    _, (a, b, _), received = trio_net
    values = array.array("f", [1.0, 2.0, 3.0, 4.0])
    typed = memoryview(values)  # len() is 4 items; the wire carries 16 bytes
    msg = Activation(window=1, batch=0, stage=0, tensor=TensorPayload("float32", (4,), typed))
    assert isinstance(await b.endpoint.request(a.key.peer_id, msg), Ack)
    assert received[0][0].tensor.to_torch().tolist() == [1.0, 2.0, 3.0, 4.0]


async def test_int8_bodies_travel_deflated_and_arrive_raw(trio_net) -> None:
    _, (a, b, _), received = trio_net
    codes = torch.randint(-20, 21, (2, 36, 18), dtype=torch.int8)  # few distinct values
    raw = TensorPayload.from_torch(codes)
    packed = deflate(raw)
    assert packed.encoding == "deflate" and 0 < len(packed.data) < len(raw.data)
    msg = Activation(window=1, batch=0, stage=0, tensor=packed)
    assert len(b.endpoint.seal(msg)[0].body) == len(packed.data)
    assert isinstance(await b.endpoint.request(a.key.peer_id, msg), Ack)
    got = received[-1][0].tensor
    assert got.encoding is None and torch.equal(got.to_torch(), codes)
    noise = TensorPayload.from_torch(torch.randint(-128, 128, (4096,), dtype=torch.int8))
    assert deflate(noise) is noise  # incompressible bytes go as they are
    floats = TensorPayload.from_torch(torch.zeros(64))
    with pytest.raises(ValueError, match="inflate it first"):
        deflate(floats).to_torch()


async def test_hostile_deflated_bodies_get_their_code(trio_net) -> None:
    a, b, _ = await admitted_pair(trio_net)
    _, _, received = trio_net
    shape = (2, 36, 18)
    size = 2 * 36 * 18
    raw = TensorPayload("int8", shape, bytes(size))

    def deflated(body: bytes, **changes: object) -> Frame:
        """A frame of its own seq (the replay guard takes each seq once) with `body`."""
        plain = b.endpoint.seal(Activation(window=1, batch=0, stage=0, tensor=raw))[0]
        changes = {"encoding": "deflate", "digest": digest(body), "body_len": len(body), **changes}
        return resign(Frame(plain.head, body), b.key, **changes)

    good = zlib.compress(bytes(size))
    cases = {
        "bomb": (deflated(zlib.compress(bytes(size * 1000))), "malformed"),
        "short": (deflated(zlib.compress(bytes(size - 1))), "malformed"),
        "unterminated": (deflated(zlib.compress(os.urandom(size))[: size - 1]), "malformed"),
        "trailing bytes": (deflated(good + b"x"), "malformed"),
        "garbage": (deflated(b"\x00garbage" * 9), "malformed"),
        "no smaller": (deflated(bytes(size)), "bad_shape"),
        "float32": (deflated(good, dtype="float32", shape=(size // 4,)), "bad_dtype"),
        "unknown encoding": (deflated(good, encoding="lz4"), "malformed"),
    }
    before = len(received)
    for name, (frame, code) in cases.items():
        assert await send(b, a, frame) == code, name
    assert len(received) == before  # none reached the handler
    assert await send(b, a, deflated(good)) is None
    assert len(received) == before + 1 and bytes(received[-1][0].tensor.data) == bytes(size)


def test_a_deflated_body_decodes_only_where_its_class_takes_one_within_limits() -> None:
    body = zlib.compress(bytes(4096))
    head = Header(1, 1, "r", "p", 1, 0.0, digest(body), len(body), "uint8", (4096,))
    deflated = dataclasses.replace(head, encoding="deflate")
    with pytest.raises(MalformedMessage, match="not deflated"):  # a hostile reply
        BlobReply.decode(deflated, body)
    assert bytes(BlobReply.decode(head, bytes(4096)).tensor.data) == bytes(4096)
    int8 = dataclasses.replace(deflated, dtype="int8", meta={"window": 1, "batch": 0, "stage": 0})
    assert bytes(Activation.decode(int8, body).tensor.data) == bytes(4096)
    huge = dataclasses.replace(int8, shape=(Activation.max_body + 1,))
    with pytest.raises(MalformedMessage, match="inflates past"):
        Activation.decode(huge, body)


def test_a_thirteenth_head_field_must_name_a_known_encoding_of_a_tensor() -> None:
    key = NodeKey.generate()
    head = Header(1, 1, "r", key.peer_id, 1, 0.0, digest(b""), 0, "int8", (0,))
    part = bytes(seal(key, head).head[:-SIG_LEN])

    def with_field(value: object, **changes: object) -> bytes:
        fields = msgpack.unpackb(part)
        fields[9:11] = [changes.get("dtype", "int8"), [0]]
        fields.append(value)
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return packed + key.sign(DOMAIN + packed)

    assert decode_head(with_field("deflate"))[0].encoding == "deflate"
    for value, changes in [
        (None, {}),
        ("lz4", {}),
        (["deflate"], {}),
        ("deflate", {"dtype": None}),
    ]:
        with pytest.raises(MalformedMessage):
            decode_head(with_field(value, **changes))


async def test_admission_refusals(trio_net, hotkeys) -> None:
    network, (a, _, _), _ = trio_net
    policy = allow(*hotkeys[:3])
    outsider = make_node(network, hotkeys[3], policy)
    unbound = make_node(network, None, policy)
    thief = make_node(network, hotkeys[1], policy, binding_for=a.key.peer_id)
    cases = [
        (outsider, Reason.NOT_ALLOWED),
        (unbound, Reason.NOT_ALLOWED),
        (thief, Reason.BAD_BINDING),
    ]
    for node, reason in cases:
        with pytest.raises(Refused) as err:
            await node.endpoint.request(a.key.peer_id, activation(torch.zeros(2)))
        assert err.value.reason is reason
        assert node.key.peer_id not in a.endpoint.sessions
    assert a.endpoint.refusals.counts["not_allowed"] == 2
    assert a.endpoint.refusals.counts["bad_binding"] == 1


async def admitted_pair(trio_net) -> tuple[Node, Node, Frame]:
    _, (a, b, _), _ = trio_net
    if a.key.peer_id not in b.endpoint.sessions:
        await b.endpoint.hello(a.key.peer_id)
    frame, _ = b.endpoint.seal(activation(torch.randn(4, 4)))
    return a, b, frame


async def send(b: Node, a: Node, frame: Frame, protocol: str = Activation.protocol) -> str | None:
    return refusal_reason(await b.transport.request(a.key.peer_id, protocol, frame, timeout=5))


async def test_frame_attacks_each_get_their_code(trio_net, hotkeys) -> None:
    a, b, good = await admitted_pair(trio_net)
    _, (_, _, c), received = trio_net
    flipped_sig = Frame(good.head[:-1] + bytes([good.head[-1] ^ 1]), good.body)
    tampered = Frame(good.head, bytes([good.body[0] ^ 1]) + bytes(good.body[1:]))
    nan = b.endpoint.seal(activation(torch.tensor([1.0, float("nan")])))[0]
    big = resign(good, b.key, body_len=300 * 2**20, shape=(75 * 2**20,))
    cases = {
        "malformed": Frame(b"\x00" * 100, b""),
        "truncated": Frame(good.head[: len(good.head) // 2], good.body),
        "bad_signature": flipped_sig,
        "re-signed by another key": resign(good, c.key),
        "re-signed as the attacker": resign(good, c.key, sender=c.key.peer_id),
        "bad_digest": tampered,
        "non_finite": nan,
        "too_large": big,
        "bad_shape": resign(good, b.key, shape=(4, 5)),
        "bad_dtype": resign(good, b.key, dtype="int32"),
        "wrong_run": resign(good, b.key, run="other-run"),
        "stale": resign(good, b.key, ts=time.time() - 3600),
        "unknown_type": resign(good, b.key, type_id=Gradient.type_id),
        "unsupported_version": resign(good, b.key, version=9),
    }
    expected = {
        "malformed": "malformed",
        "truncated": "malformed",
        "bad_signature": "bad_signature",
        "re-signed by another key": "bad_signature",
        "re-signed as the attacker": "sender_mismatch",
        "bad_digest": "bad_digest",
        "non_finite": "non_finite",
        "too_large": "too_large",
        "bad_shape": "bad_shape",
        "bad_dtype": "bad_dtype",
        "wrong_run": "wrong_run",
        "stale": "stale",
        "unknown_type": "unknown_type",
        "unsupported_version": "unsupported_version",
    }
    before = len(received)
    for name, frame in cases.items():
        assert await send(b, a, frame) == expected[name], name
    assert len(received) == before  # no refused frame reached the handler
    for code in set(expected.values()):
        assert a.endpoint.refusals.counts[code] >= 1
    fresh = b.endpoint.seal(activation(torch.randn(4, 4)))[0]
    assert await send(b, a, fresh) is None  # a genuine frame still works, once
    assert await send(b, a, fresh) == "replay"
    assert len(received) == before + 1


async def test_unknown_sender_and_channel_mismatch(trio_net, hotkeys) -> None:
    network, (a, _, c), _ = trio_net
    stranger = make_node(network, hotkeys[2], allow(*hotkeys))
    frame = stranger.endpoint.seal(activation(torch.ones(2)))[0]
    assert await send(stranger, a, frame) == "unknown_sender"
    await c.endpoint.hello(a.key.peer_id)
    relayed = c.endpoint.seal(activation(torch.ones(2)))[0]
    assert await send(stranger, a, relayed) == "sender_mismatch"  # authenticated channel ≠ signer


async def test_hello_rate_limit(trio_net) -> None:
    _, (a, b, _), _ = trio_net
    codes = []
    for _ in range(8):
        frame = b.endpoint.seal(b.endpoint._hello())[0]
        codes.append(await send(b, a, frame, Hello.protocol))
    assert codes[:5] == [None] * 5 and "rate_limited" in codes[5:]


async def test_handler_crash_is_internal_refusal_and_node_survives(trio_net) -> None:
    _, (a, b, _), _ = trio_net

    async def broken(msg: Gradient, peer: PeerSession) -> Message:
        raise ZeroDivisionError

    a.endpoint.register(Gradient, broken)
    grad = Gradient(window=1, batch=0, stage=1, tensor=TensorPayload.from_torch(torch.ones(2)))
    with pytest.raises(Refused) as err:
        await b.endpoint.request(a.key.peer_id, grad)
    assert err.value.reason is Reason.INTERNAL
    assert isinstance(await b.endpoint.request(a.key.peer_id, activation(torch.ones(2))), Ack)


async def test_a_full_store_is_refused_as_store_full_and_counted(trio_net) -> None:
    _, (a, b, _), _ = trio_net

    async def full(msg: Gradient, peer: PeerSession) -> Message:
        raise MapFullError(64 * 2**20)

    a.endpoint.register(Gradient, full)
    grad = Gradient(window=1, batch=0, stage=1, tensor=TensorPayload.from_torch(torch.ones(2)))
    with pytest.raises(Refused) as err:
        await b.endpoint.request(a.key.peer_id, grad)
    assert err.value.reason is Reason.STORE_FULL and "store is full" in err.value.detail
    assert a.endpoint.refusals.counts["store_full"] == 1
    assert isinstance(await b.endpoint.request(a.key.peer_id, activation(torch.ones(2))), Ack)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_fuzzed_frames_never_reach_the_handler(trio_net, data) -> None:
    a, b, good = await admitted_pair(trio_net)
    _, _, received = trio_net
    before = len(received)
    head = bytearray(good.head)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(head) - 1))
        head[i] ^= data.draw(st.integers(1, 255))
    assume(bytes(head) != good.head)
    junk = data.draw(st.binary(max_size=200))
    for frame in (Frame(bytes(head), good.body), Frame(junk, b"")):
        reason = await send(b, a, frame)
        assert reason is not None and reason in {r.value for r in Reason}
    assert len(received) == before
