"""Peer exchange codec and framing: validation, size caps, partial reads, dialable addresses."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p.errors import HostError, PeerExchangeError
from p2p.peer_exchange import (
    MAX_FRAME,
    PeerRecord,
    decode_response,
    dialable_addrs,
    encode_request,
    encode_response,
    read_frame,
    write_frame,
)

PEER = "12D3KooWGKnF5AWX8e4ZnbEmtKcp9AQPkqvMApuDLPfhQhREJYSb"


class ChunkedStream:
    """A stream whose reads return at most `chunk` bytes, like libp2p's `stream.read(n)`."""

    def __init__(self, data: bytes = b"", chunk: int = 3) -> None:
        self.data, self.chunk, self.written = data, chunk, b""

    async def read(self, n: int | None = None) -> bytes:
        size = self.chunk if n is None else min(n, self.chunk)
        out, self.data = self.data[:size], self.data[size:]
        return out

    async def write(self, data: bytes) -> None:
        self.written += data


def test_response_round_trip() -> None:
    records = [PeerRecord(PEER, ("/ip4/10.0.0.1/tcp/4001",)), PeerRecord(PEER[:-1] + "a", ())]
    decoded = decode_response(encode_response(records))
    assert decoded == records[:1]  # entries without addresses are not sent
    assert msgpack.unpackb(encode_request()) == {}


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # never-used msgpack byte
        msgpack.packb({"peer_id": PEER}),
        msgpack.packb([{"peer_id": PEER}]),
        msgpack.packb([{"peer_id": PEER, "addrs": ["/ip4/1.2.3.4/tcp/1"], "x": 1}]),
        msgpack.packb([{"peer_id": "0OIl", "addrs": []}]),  # not base58
        msgpack.packb([{"peer_id": 5, "addrs": []}]),
        msgpack.packb([{"peer_id": PEER, "addrs": "/ip4/1.2.3.4/tcp/1"}]),
        msgpack.packb([{"peer_id": PEER, "addrs": [b"/ip4/1.2.3.4/tcp/1"]}]),
        msgpack.packb([{"peer_id": PEER, "addrs": ["ip4/1.2.3.4"]}]),
        msgpack.packb([{"peer_id": PEER, "addrs": ["/ip4/1.2.3.4/tcp/1"] * 9}]),
        msgpack.packb([{"peer_id": PEER, "addrs": []}] * 201),
    ],
)
def test_malformed_responses_are_rejected(payload: bytes) -> None:
    with pytest.raises(PeerExchangeError):
        decode_response(payload)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_peer_exchange_error(data: bytes) -> None:
    with contextlib.suppress(PeerExchangeError):
        decode_response(data)


def test_peer_exchange_error_is_a_host_error() -> None:
    assert issubclass(PeerExchangeError, HostError)


def test_large_response_is_trimmed_under_frame_cap() -> None:
    addrs = tuple(f"/dns4/{'x' * 200}{i}.example/tcp/4001" for i in range(8))
    records = [PeerRecord(PEER, addrs)] * 200
    data = encode_response(records)
    assert len(data) <= MAX_FRAME
    assert 0 < len(decode_response(data)) < 200


async def test_frames_survive_partial_reads() -> None:
    out = ChunkedStream()
    payload = bytes(range(256)) * 40
    await write_frame(out, payload)
    assert out.written[:4] == len(payload).to_bytes(4, "big")
    assert await read_frame(ChunkedStream(out.written, chunk=7)) == payload


async def test_truncated_frame_raises() -> None:
    stream = ChunkedStream((100).to_bytes(4, "big") + b"x" * 40)
    with pytest.raises(PeerExchangeError, match="40 of 100"):
        await read_frame(stream)


async def test_oversized_frames_are_refused_both_ways() -> None:
    with pytest.raises(PeerExchangeError, match="limit"):
        await read_frame(ChunkedStream((MAX_FRAME + 1).to_bytes(4, "big") + b"x" * 10))
    with pytest.raises(PeerExchangeError):
        await write_frame(ChunkedStream(), b"x" * (MAX_FRAME + 1))


def test_dialable_addrs() -> None:
    announced = [
        f"/ip4/0.0.0.0/tcp/4001/p2p/{PEER}",
        f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}",
        "/ip4/10.1.2.3/tcp/4001",
        "/ip6/::/tcp/4002",
        "garbage",
    ]
    assert dialable_addrs(announced, "10.1.2.3") == [
        "/ip4/10.1.2.3/tcp/4001",
        "/ip4/127.0.0.1/tcp/4001",
    ]
    assert dialable_addrs(announced, "fd00::7") == [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/10.1.2.3/tcp/4001",
        "/ip6/fd00::7/tcp/4002",
    ]
    assert dialable_addrs(announced, None) == ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.1.2.3/tcp/4001"]
