"""Frame wire format: pure preamble parsing, chunked writes, reads over partial reads."""

from __future__ import annotations

import array
import asyncio
import hashlib
import random
import struct

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.framing import (
    CHUNK,
    PREAMBLE_SIZE,
    AsyncioStreamChannel,
    FrameTooLarge,
    FramingError,
    StreamEnded,
    TrioStreamChannel,
    as_bytes_view,
    encode_frame,
    encode_preamble,
    frame_parts,
    parse_preamble,
    read_body,
    read_exact,
    read_head,
    write_frame,
)
from p2p.socket_channel import SocketChannel
from p2p.transport import MAX_HEAD_BYTES, Frame

pytestmark = pytest.mark.timeout(60)


class PartialStream:
    """A libp2p-like stream whose read(n) returns at most a random number of bytes <= n."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data = memoryview(data)
        self._rng = random.Random(seed)

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self._data:
            raise EOFError  # as libp2p's StreamEOF
        size = self._rng.randint(1, n or len(self._data))
        piece, self._data = self._data[:size], self._data[size:]
        return bytes(piece)

    async def write(self, data: bytes) -> None:
        raise AssertionError("not used")


def read_frames(data: bytes, seed: int, count: int, max_body: int = 1 << 20) -> list[Frame]:
    async def main() -> list[Frame]:
        channel = TrioStreamChannel(PartialStream(data, seed))
        frames = []
        for _ in range(count):
            head, body_len = await read_head(channel, max_body=max_body)
            frames.append(Frame(head, bytes(await read_body(channel, body_len))))
        return frames

    return trio.run(main)


frames_st = st.lists(
    st.builds(Frame, head=st.binary(max_size=300), body=st.binary(max_size=5000)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(frames=frames_st, chunk=st.integers(1, 4096), seed=st.integers(0, 2**32))
def test_frames_round_trip_through_partial_reads(frames: list[Frame], chunk: int, seed: int):
    wire = b"".join(bytes(part) for f in frames for part in frame_parts(f, chunk))
    assert wire == b"".join(encode_frame(f) for f in frames)
    assert read_frames(wire, seed, len(frames)) == frames


@given(
    data=st.binary(min_size=PREAMBLE_SIZE, max_size=PREAMBLE_SIZE), max_body=st.integers(0, 2**40)
)
def test_parse_preamble_accepts_only_frames_within_limits(data: bytes, max_body: int):
    head_len, body_len = struct.unpack(">IQ", data)
    if head_len <= MAX_HEAD_BYTES and body_len <= max_body:
        assert parse_preamble(data, max_body=max_body) == (head_len, body_len)
    else:
        with pytest.raises(FrameTooLarge):
            parse_preamble(data, max_body=max_body)


@given(data=st.binary(max_size=40).filter(lambda d: len(d) != PREAMBLE_SIZE))
def test_parse_preamble_rejects_wrong_length(data: bytes):
    with pytest.raises(FramingError, match="preamble"):
        parse_preamble(data, max_body=1 << 30)


def test_oversized_preambles_rejected():
    with pytest.raises(FrameTooLarge):
        parse_preamble(encode_preamble(MAX_HEAD_BYTES, 1001), max_body=1000)
    with pytest.raises(FrameTooLarge):
        parse_preamble(struct.pack(">IQ", MAX_HEAD_BYTES + 1, 0), max_body=1000)
    assert parse_preamble(encode_preamble(MAX_HEAD_BYTES, 1000), max_body=1000) == (
        MAX_HEAD_BYTES,
        1000,
    )
    with pytest.raises(FramingError):
        encode_preamble(MAX_HEAD_BYTES + 1, 0)


@given(data=st.data())
def test_truncated_frames_end_with_stream_ended(data: st.DataObject):
    frame = Frame(data.draw(st.binary(max_size=50)), data.draw(st.binary(max_size=200)))
    wire = encode_frame(frame)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(StreamEnded) as info:
        read_frames(wire[:cut], 0, 1)
    assert info.value.received <= cut


def test_body_goes_out_in_chunks_without_copies():
    body = bytearray(random.randbytes(20 * 1024 * 1024 + 5))
    parts = list(frame_parts(Frame(b"head", body)))
    assert bytes(parts[0]) == encode_preamble(4, len(body)) + b"head"
    assert all(isinstance(p, memoryview) and p.obj is body for p in parts[1:])
    assert [len(p) for p in parts[1:]] == [CHUNK] * 5 + [5]


def test_non_byte_buffers_are_measured_in_bytes():
    floats = array.array("f", [1.0, 2.0, 3.0])
    view = as_bytes_view(memoryview(floats))
    assert view.nbytes == len(view) == 12
    assert encode_frame(Frame(b"h", memoryview(floats)))[:PREAMBLE_SIZE] == encode_preamble(1, 12)


async def test_20_mib_body_over_asyncio_streams_arrives_intact():
    body = random.randbytes(20 * 1024 * 1024)
    received: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = AsyncioStreamChannel(reader, writer)
        head, body_len = await read_head(channel, max_body=len(body))
        received.set_result(Frame(head, await read_body(channel, body_len)))
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = await write_frame(AsyncioStreamChannel(reader, writer), Frame(b"t", memoryview(body)))
    frame = await asyncio.wait_for(received, 30)
    writer.close()
    server.close()
    await server.wait_closed()
    assert sent == PREAMBLE_SIZE + 1 + len(body)
    assert frame.head == b"t"
    assert hashlib.sha256(frame.body).digest() == hashlib.sha256(body).digest()


async def test_20_mib_body_over_socket_channel_arrives_intact():
    body = random.randbytes(20 * 1024 * 1024)
    accepted: asyncio.Future[SocketChannel] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SocketChannel(accepted.set_result), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(SocketChannel, "127.0.0.1", port)
    peer = await accepted
    frames = [Frame(b"a", b"small"), Frame(b"b", memoryview(body)), Frame(b"c", b"")]
    writing = asyncio.create_task(write_all(client, frames))
    got = []
    for _ in frames:
        head, body_len = await read_head(peer, max_body=len(body))
        got.append(Frame(head, bytes(await read_body(peer, body_len))))
    await writing
    client.abort()
    with pytest.raises(StreamEnded):
        await read_head(peer, max_body=1)
    server.close()
    await server.wait_closed()
    assert got[0] == frames[0] and got[2] == frames[2]
    assert hashlib.sha256(got[1].body).digest() == hashlib.sha256(body).digest()


async def write_all(channel: SocketChannel, frames: list[Frame]) -> None:
    for frame in frames:
        await write_frame(channel, frame)


async def test_socket_channel_hands_out_pending_bytes_without_waiting():
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[SocketChannel] = loop.create_future()
    server = await loop.create_server(lambda: SocketChannel(accepted.set_result), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(SocketChannel, "127.0.0.1", port)
    peer = await accepted
    assert peer.read_now(1) is None  # nothing has arrived
    client.write_now(b"abcdef")
    await asyncio.sleep(0.05)
    assert peer.read_now(7) is None  # too few: none consumed
    assert peer.read_now(6) == b"abcdef"
    client.write_now(b"ghij")
    assert await read_exact(peer, 4) == b"ghij"  # waits when nothing is pending
    client.write_now(b"klmnop")
    await asyncio.sleep(0.05)
    assert peer.read_now(2) == b"kl" and await read_exact(peer, 4) == b"mnop"
    assert peer.read_now(0) == b"" and peer.read_now(1) is None
    client.abort()
    server.close()
    await server.wait_closed()
