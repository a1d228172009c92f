"""Wire format of one frame on a byte stream, and reading/writing it over libp2p or asyncio.

A frame is a preamble ``[u32 head_len][u64 body_len]`` (big-endian), then the head, then the body.
``parse_preamble`` and ``frame_parts`` are pure. The async helpers work on any ``ByteChannel``
(``read_into`` fills a buffer completely, ``write`` sends one buffer); adapters are given for a
libp2p (trio) stream and an asyncio StreamReader/StreamWriter pair. Bodies go out as CHUNK-sized
memoryview slices (never concatenated) and come in as one bytearray allocated from ``body_len``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any, Protocol

from p2p.transport import MAX_HEAD_BYTES, Buffer, Frame, TransportError

PREAMBLE = struct.Struct(">IQ")
PREAMBLE_SIZE = PREAMBLE.size
CHUNK = 4 * 1024 * 1024
DEFAULT_MAX_BODY = 256 * 1024 * 1024
SMALL_BODY = 64 * 1024
READ_AHEAD = 64 * 1024
_U64_MAX = 2**64 - 1


class FramingError(TransportError):
    """Bytes on a stream that are not a frame within the limits."""


class FrameTimeout(TransportError):
    """A read of the next frame, or of the rest of a started one, took too long."""


class FrameTooLarge(FramingError):
    def __init__(self, head_len: int, body_len: int, max_body: int) -> None:
        super().__init__(
            f"frame of {head_len}+{body_len} bytes exceeds the limits "
            f"(head {MAX_HEAD_BYTES}, body {max_body})"
        )
        self.head_len = head_len
        self.body_len = body_len


class StreamEnded(FramingError):
    """The stream ended before a frame was complete; `received` bytes of the read had arrived."""

    def __init__(self, wanted: int, received: int) -> None:
        super().__init__(f"stream ended after {received} of {wanted} bytes")
        self.received = received


def as_bytes_view(data: Buffer) -> memoryview:
    """A flat byte view of `data` (a tensor's memoryview may have another item format)."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise TransportError("frame body must be a C-contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def encode_preamble(head_len: int, body_len: int) -> bytes:
    if not 0 <= head_len <= MAX_HEAD_BYTES:
        raise FramingError(f"head of {head_len} bytes exceeds {MAX_HEAD_BYTES}")
    if not 0 <= body_len <= _U64_MAX:
        raise FramingError(f"body length {body_len} out of range")
    return PREAMBLE.pack(head_len, body_len)


def parse_preamble(data: Buffer, *, max_body: int) -> tuple[int, int]:
    """(head_len, body_len) from exactly PREAMBLE_SIZE bytes; raises FramingError/FrameTooLarge."""
    if len(data) != PREAMBLE_SIZE:
        raise FramingError(f"preamble has {PREAMBLE_SIZE} bytes, got {len(data)}")
    head_len, body_len = PREAMBLE.unpack(data)
    if head_len > MAX_HEAD_BYTES or body_len > max_body:
        raise FrameTooLarge(head_len, body_len, max_body)
    return head_len, body_len


def frame_parts(frame: Frame, chunk: int = CHUNK) -> Iterator[Buffer]:
    """Preamble and head in one buffer, then the body in `chunk`-sized views.

    A body of at most SMALL_BODY bytes is copied into the first buffer instead: one write
    costs less than two for small frames.
    """
    body = as_bytes_view(frame.body)
    first = encode_preamble(len(frame.head), body.nbytes) + frame.head
    if body.nbytes <= min(chunk, SMALL_BODY):
        yield first + body
        return
    yield first
    for offset in range(0, body.nbytes, chunk):
        yield body[offset : offset + chunk]


def encode_frame(frame: Frame) -> bytes:
    """The whole frame as one bytes object (small frames and tests only)."""
    return b"".join(frame_parts(frame))


class ByteChannel(Protocol):
    async def read_into(self, view: memoryview) -> None:
        """Fill `view` completely; raise StreamEnded if the stream ends first."""
        ...

    def read_now(self, n: int) -> bytes | None:
        """The next `n` bytes if they have already arrived (consumed), else None (nothing is)."""
        ...

    async def write(self, data: Buffer) -> None: ...


async def read_exact(channel: ByteChannel, n: int) -> bytes:
    data = channel.read_now(n)
    if data is not None:
        return data
    buf = bytearray(n)
    if n:
        await channel.read_into(memoryview(buf))
    return bytes(buf)


async def read_preamble(channel: ByteChannel, *, max_body: int) -> tuple[int, int]:
    return parse_preamble(await read_exact(channel, PREAMBLE_SIZE), max_body=max_body)


async def read_head(channel: ByteChannel, *, max_body: int) -> tuple[bytes, int]:
    """Read a preamble and the head it announces; returns (head, body_len)."""
    head_len, body_len = await read_preamble(channel, max_body=max_body)
    return await read_exact(channel, head_len), body_len


async def read_body(channel: ByteChannel, body_len: int) -> bytearray:
    body = bytearray(body_len)
    if body_len:
        await channel.read_into(memoryview(body))
    return body


async def write_frame(channel: ByteChannel, frame: Frame, chunk: int = CHUNK) -> int:
    """Write `frame`; returns the number of bytes written."""
    total = 0
    for part in frame_parts(frame, chunk):
        await channel.write(part)
        total += len(part)
    return total


class TrioStreamChannel:
    """A libp2p stream (trio side) as a ByteChannel; counts bytes read in `received`.

    Small reads ask the stream for READ_AHEAD bytes and keep the surplus: libp2p's yamux sends
    a window update after every read, so fewer reads mean fewer frames on the wire.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.received = 0
        self._ahead = bytearray()

    async def read_into(self, view: memoryview) -> None:
        wanted = len(view)
        got = min(len(self._ahead), wanted)
        if got:
            view[:got] = self._ahead[:got]
            del self._ahead[:got]
        while got < wanted:
            data = await self._read_some(max(wanted - got, READ_AHEAD))
            if not data:
                raise StreamEnded(wanted, got)
            self.received += len(data)
            used = min(len(data), wanted - got)
            view[got : got + used] = data[:used] if used < len(data) else data
            self._ahead += data[used:]
            got += used

    def read_now(self, n: int) -> bytes | None:
        if len(self._ahead) < n:
            return None
        data = bytes(self._ahead[:n])
        del self._ahead[:n]
        return data

    @property
    def buffered(self) -> int:
        """Bytes read ahead from the stream and not consumed yet."""
        return len(self._ahead)

    async def write(self, data: Buffer) -> None:
        await self.stream.write(data)

    async def _read_some(self, n: int) -> bytes:
        """Up to `n` bytes (what is buffered), b"" at the end of the stream."""
        try:
            data: bytes = await self.stream.read(n)
        except EOFError:  # libp2p's StreamEOF
            return b""
        return data


class AsyncioStreamChannel:
    """An asyncio StreamReader/StreamWriter pair as a ByteChannel."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read_into(self, view: memoryview) -> None:
        wanted, got = len(view), 0
        while got < wanted:
            data = await self.reader.read(wanted - got)
            if not data:
                raise StreamEnded(wanted, got)
            view[got : got + len(data)] = data
            got += len(data)

    def read_now(self, n: int) -> bytes | None:
        return None  # StreamReader's buffer is private

    async def write(self, data: Buffer) -> None:
        self.writer.write(data)
        await self.writer.drain()
