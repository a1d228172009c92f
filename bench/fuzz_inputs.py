"""Malformed inputs for `bench/fuzz.py`: frames built from valid signed envelopes of every
request type and then broken one way each, raw bulk-lane byte streams, and hostile HTTP requests.
Seeded: the same seed gives the same inputs."""

from __future__ import annotations

import dataclasses
import random
import struct
import time
import typing
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

from p2p.bulk_lane import encode_protocol
from p2p.envelope import Header, decode_head, digest, seal
from p2p.framing import encode_preamble
from p2p.identity import NodeKey
from p2p.messages import Message
from p2p.registry import REQUESTS
from p2p.transport import Frame

FRAME_KINDS = (
    "valid", "replay", "flip_head", "flip_body", "truncate_head", "random_head", "no_signature",
    "bad_msgpack", "wrong_type", "unknown_type", "wrong_run", "stale", "wrong_sender", "nan",
    "inf", "bad_shape", "bad_dtype", "wrong_meta_type", "unknown_field", "huge_meta",
    "bad_deflate",
)  # fmt: skip
RAW_KINDS = ("oversize_preamble", "truncated_head", "garbage_protocol", "zero_preamble")
HTTP_KINDS = (
    "traversal", "long_path", "nul_path", "bad_method", "huge_header", "bad_header",
    "garbage_line", "unknown_path", "bad_query", "bad_version",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FrameInput:
    kind: str
    protocol: str
    frame: Frame
    bulk: bool
    expects_refusal: bool = True


@dataclass(frozen=True, slots=True)
class RawInput:
    kind: str
    data: bytes
    expects_reply: bool


def sample_meta(cls: type[Message]) -> dict[str, Any]:
    """Plausible field values for `cls` by type hint (zeroes, empty strings and lists)."""
    hints = typing.get_type_hints(cls)
    meta: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "tensor":
            continue
        hint = str(hints[f.name])
        if "None" in hint and f.default is None:
            meta[f.name] = None
        elif hint.startswith("list") or "tuple" in hint:
            meta[f.name] = []
        elif hint.startswith("dict"):
            meta[f.name] = {}
        elif "bool" in hint:
            meta[f.name] = False
        elif "int" in hint:
            meta[f.name] = 1
        elif "float" in hint:
            meta[f.name] = 1.0
        elif "bytes" in hint:
            meta[f.name] = b""
        else:
            meta[f.name] = "x"
    return meta


class FrameMaker:
    """Signed envelopes from `key` (an admitted peer) to break."""

    def __init__(self, key: NodeKey, run: str, rng: random.Random) -> None:
        self._key, self._run, self._rng = key, run, rng
        self._seq = int(time.time() * 1000) << 10
        self._last: dict[str, Frame] = {}

    def envelope(self, cls: type[Message], **changes: Any) -> Frame:
        tensor = any(f.name == "tensor" for f in dataclasses.fields(cls))
        body = struct.pack("<8f", *range(8)) if tensor else b""
        self._seq += 1
        header = Header(
            type_id=cls.type_id,
            version=cls.version,
            run=self._run,
            sender=self._key.peer_id,
            seq=self._seq,
            ts=time.time(),
            digest=digest(body),
            body_len=len(body),
            dtype="float32" if tensor else None,
            shape=(2, 4) if tensor else None,
            meta=sample_meta(cls),
        )
        body = changes.pop("body", body)
        header = dataclasses.replace(header, **changes)
        return seal(self._key, header, body)

    def make(self, kind: str, bulk: bool) -> FrameInput:
        rng = self._rng
        cls = rng.choice(REQUESTS)
        frame = self.envelope(cls)
        head, body = bytes(frame.head), bytes(frame.body)
        if kind == "valid":
            self._last[cls.protocol] = frame
            return FrameInput(kind, cls.protocol, frame, bulk, expects_refusal=False)
        if kind == "replay":
            frame = self._last.get(cls.protocol, frame)
            self._last[cls.protocol] = frame
            return FrameInput(kind, cls.protocol, frame, bulk, expects_refusal=False)
        if kind == "flip_head":
            i = rng.randrange(len(head))
            head = head[:i] + bytes([head[i] ^ (1 << rng.randrange(8))]) + head[i + 1 :]
        elif kind == "flip_body":
            body = (body or b"\x00") + bytes([rng.randrange(256)])
        elif kind == "truncate_head":
            head = head[: rng.randrange(1, len(head))]
        elif kind == "random_head":
            head = rng.randbytes(rng.randrange(1, 400))
        elif kind == "no_signature":
            head = head[:-64]
        elif kind == "bad_msgpack":
            head = b"\xc1" + rng.randbytes(40) + head[-64:]
        elif kind == "wrong_type":
            other = rng.choice([c for c in REQUESTS if c is not cls])
            return FrameInput(kind, cls.protocol, self.envelope(other), bulk)
        elif kind == "unknown_type":
            return FrameInput(kind, cls.protocol, self.envelope(cls, type_id=9999), bulk)
        elif kind == "wrong_run":
            return FrameInput(kind, cls.protocol, self.envelope(cls, run="other-run"), bulk)
        elif kind == "stale":
            return FrameInput(kind, cls.protocol, self.envelope(cls, ts=time.time() - 3600), bulk)
        elif kind == "wrong_sender":
            stranger = NodeKey.generate().peer_id
            return FrameInput(kind, cls.protocol, self.envelope(cls, sender=stranger), bulk)
        elif kind in ("nan", "inf"):
            value = float("nan") if kind == "nan" else float("inf")
            data = struct.pack("<8f", *([value] * 8))
            changes = {"body": data, "digest": digest(data), "body_len": 32, "dtype": "float32",
                       "shape": (2, 4)}  # fmt: skip
            return FrameInput(kind, cls.protocol, self.envelope(cls, **changes), bulk)
        elif kind == "bad_shape":
            changes = {"shape": (rng.randrange(1, 9), rng.randrange(1, 9), 7), "dtype": "float32"}
            return FrameInput(kind, cls.protocol, self.envelope(cls, **changes), bulk)
        elif kind == "bad_dtype":
            dtype = rng.choice(["float64", "int8", "complex64", "object", "", "bfloat16x"])
            return FrameInput(kind, cls.protocol, self.envelope(cls, dtype=dtype), bulk)
        elif kind == "wrong_meta_type":
            header = decode_head(head)[0]
            meta: dict[str, Any] = {
                k: [v] if not isinstance(v, list) else "x" for k, v in header.meta.items()
            }
            return FrameInput(kind, cls.protocol, self.envelope(cls, meta=meta), bulk)
        elif kind == "unknown_field":
            meta = {**sample_meta(cls), "zz_unknown": [1]}
            return FrameInput(kind, cls.protocol, self.envelope(cls, meta=meta), bulk)
        elif kind == "bad_deflate":  # int8 (32, 64): 2,048 raw bytes, the body claims deflate
            target = rng.choice([c for c in REQUESTS if c.deflate_dtypes])
            raw = 32 * 64
            data = rng.choice(
                [
                    zlib.compress(bytes(raw * 100)),  # inflates far past its tensor
                    zlib.compress(bytes(raw - 1)),
                    zlib.compress(rng.randbytes(raw))[: raw - 1],  # unterminated
                    zlib.compress(bytes(raw)) + b"\x00",  # trailing bytes
                    rng.randbytes(rng.randrange(1, raw)),
                ]
            )
            encoding = rng.choice(["deflate", "deflate", "deflate", "lz4"])
            changes = {"body": data, "digest": digest(data), "body_len": len(data),
                       "dtype": "int8", "shape": (32, 64), "encoding": encoding}  # fmt: skip
            return FrameInput(kind, target.protocol, self.envelope(target, **changes), bulk)
        elif kind == "huge_meta":
            meta = {**sample_meta(cls), "detail": ["x" * 20_000]}
            try:
                return FrameInput(kind, cls.protocol, self.envelope(cls, meta=meta), bulk)
            except Exception:  # over the head cap even to sign: send it unsigned
                head = msgpack.packb(["x" * 20_000]) + b"\x00" * 64
        return FrameInput(kind, cls.protocol, Frame(head=head, body=body), bulk)


def raw_bulk(kind: str, rng: random.Random) -> RawInput:
    protocol = encode_protocol(rng.choice(REQUESTS).protocol)
    if kind == "oversize_preamble":
        return RawInput(kind, protocol + encode_preamble(200, 2**40), expects_reply=True)
    if kind == "truncated_head":
        return RawInput(kind, protocol + encode_preamble(300, 0) + rng.randbytes(20), False)
    if kind == "garbage_protocol":
        return RawInput(kind, rng.randbytes(rng.randrange(1, 64)), expects_reply=False)
    return RawInput(kind, protocol + encode_preamble(0, 0), expects_reply=True)


def http_request(kind: str, rng: random.Random) -> bytes:
    path, method, headers, version = "/status", "GET", "", "HTTP/1.1"
    if kind == "traversal":
        path = rng.choice(["/../../etc/passwd", "/dashboard/..%2f..%2fnode.key", "/%2e%2e/"])
    elif kind == "long_path":
        path = "/" + "a" * rng.choice([5_000, 20_000, 100_000])
    elif kind == "nul_path":
        path = "/status%00.json"
    elif kind == "bad_method":
        method = rng.choice(["POST", "DELETE", "TRACE", "PUT", "BREW", "G\x01T"])
    elif kind == "huge_header":
        headers = "X-Big: " + "b" * rng.choice([10_000, 70_000]) + "\r\n"
    elif kind == "bad_header":
        headers = rng.choice(["Bad Header\r\n", "X-A: \x00\x01\r\n", ": empty\r\n"])
    elif kind == "garbage_line":
        return rng.randbytes(rng.randrange(1, 200)) + b"\r\n\r\n"
    elif kind == "unknown_path":
        path = f"/{rng.randrange(10**6)}/<script>"
    elif kind == "bad_query":
        path = "/events?" + "&".join(f"k{i}=%ZZ" for i in range(200))
    elif kind == "bad_version":
        version = rng.choice(["HTTP/9.9", "HTTP/1", "SPDY/3"])
    line = f"{method} {path} {version}\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
    return line.encode("latin-1", "replace")
