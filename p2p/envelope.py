"""Signed envelopes: a small msgpack head signed by the sender, beside raw payload bytes.

head = msgpack([MAGIC, type_id, version, run, sender, seq, ts, digest, body_len, dtype, shape,
meta(, encoding)]) ‖ Ed25519 signature (64 bytes) over DOMAIN ‖ msgpack part. The body
(tensor bytes) never enters msgpack; the head carries its blake3 digest, so the body's
integrity follows from the head's signature whatever channel carried it. A thirteenth field,
present only for a deflated body (``p2p.body_codec``), names its encoding; digest and body_len
then describe the body as sent, dtype and shape the tensor it inflates to. Between two
admitted peers that share session keys (``p2p.session_keys``) the magic is MAC_MAGIC and the
64 bytes are a keyed blake3 tag instead: only the receiver can check it (`Header.mac`).
Decoding is strict and bounded: anything that does not parse raises MalformedMessage.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import blake3
import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2p.body_codec import ENCODINGS
from p2p.errors import IdentityError, P2PError
from p2p.identity import NodeKey, public_bytes_from_peer_id
from p2p.refusals import Reason, Refused
from p2p.session_keys import tag, tag_ok
from p2p.transport import MAX_HEAD_BYTES, Buffer, Frame, nbytes

MAGIC = "tsr1"
MAC_MAGIC = "tsm1"
DOMAIN = b"tessera/envelope/1\x00"
SIG_LEN = 64
_FIELDS = 12  # a thirteenth, the body's encoding, only when it has one
_MAGICS = (MAGIC, MAC_MAGIC)


class MalformedMessage(P2PError):
    """Bytes that do not decode to a well-formed envelope or message."""


@dataclass(frozen=True, slots=True)
class Header:
    type_id: int
    version: int
    run: str
    sender: str
    seq: int
    ts: float
    digest: bytes
    body_len: int
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    mac: bool = False
    """Tagged with the pair's session key rather than signed."""
    encoding: str | None = None
    """The body's encoding (`p2p.body_codec.ENCODINGS`); None: the tensor's raw bytes."""


EMPTY_DIGEST = blake3.blake3(b"").digest()


def digest(body: Buffer) -> bytes:
    size = nbytes(body)
    if not size:
        return EMPTY_DIGEST
    return blake3.blake3(body, max_threads=blake3.blake3.AUTO if size > 1 << 22 else 1).digest()


class SeqCounter:
    """Per-process sequence numbers that stay monotonic across restarts (µs clock origin)."""

    def __init__(self) -> None:
        self._next = itertools.count(time.time_ns() // 1000)

    def __call__(self) -> int:
        return next(self._next)


def seal(
    key: NodeKey, header: Header, body: Buffer = b"", *, mac_key: bytes | None = None
) -> Frame:
    """Encode and sign `header` (its sender, digest and body_len must describe `body`), or tag it
    with the session key `mac_key` of sender and receiver."""
    fields = [
        MAC_MAGIC if mac_key is not None else MAGIC,
        header.type_id,
        header.version,
        header.run,
        header.sender,
        header.seq,
        header.ts,
        header.digest,
        header.body_len,
        header.dtype,
        list(header.shape) if header.shape is not None else None,
        header.meta,
    ]
    if header.encoding is not None:
        fields.append(header.encoding)
    part = msgpack.packb(fields, use_bin_type=True)
    head = part + (tag(mac_key, part) if mac_key is not None else key.sign(DOMAIN + part))
    if len(head) > MAX_HEAD_BYTES:
        raise MalformedMessage(f"head of {len(head)} bytes exceeds {MAX_HEAD_BYTES}")
    return Frame(head=head, body=body)


def decode_head(head: bytes) -> tuple[Header, bytes, bytes]:
    """(header, signed part, signature); raises MalformedMessage. Does not check the signature."""
    if not 1 + SIG_LEN <= len(head) <= MAX_HEAD_BYTES:
        raise MalformedMessage(f"head length {len(head)} out of range")
    part, sig = head[:-SIG_LEN], head[-SIG_LEN:]
    try:
        fields = msgpack.unpackb(
            part,
            raw=False,
            strict_map_key=True,
            max_bin_len=1024,
            max_str_len=4096,
            max_array_len=4096,
            max_map_len=256,
            max_ext_len=0,
        )
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise MalformedMessage(f"head does not decode: {exc}") from None
    if (
        not isinstance(fields, list)
        or len(fields) not in (_FIELDS, _FIELDS + 1)
        or fields[0] not in _MAGICS
    ):
        raise MalformedMessage("head is not a tessera envelope")
    magic, type_id, version, run, sender, seq, ts, dig, body_len, dtype, shape, meta = fields[:12]
    encoding = fields[12] if len(fields) > _FIELDS else None
    if len(fields) > _FIELDS and (
        not isinstance(encoding, str) or encoding not in ENCODINGS or dtype is None
    ):
        raise MalformedMessage(f"body encoding {encoding!r} unknown or without a tensor")
    ok = (
        _is_uint(type_id)
        and _is_uint(version)
        and isinstance(run, str)
        and isinstance(sender, str)
        and _is_uint(seq)
        and isinstance(ts, float | int)
        and isinstance(dig, bytes)
        and len(dig) == 32
        and _is_uint(body_len)
        and (dtype is None or isinstance(dtype, str))
        and isinstance(meta, dict)
        and (shape is None or (isinstance(shape, list) and all(_is_uint(d) for d in shape)))
    )
    if not ok:
        raise MalformedMessage("head fields have the wrong types")
    header = Header(
        type_id,
        version,
        run,
        sender,
        seq,
        float(ts),
        dig,
        body_len,
        dtype,
        tuple(shape) if shape is not None else None,
        meta,
        mac=magic == MAC_MAGIC,
        encoding=encoding,
    )
    return header, part, sig


def signature_ok(header: Header, part: bytes, sig: bytes) -> bool:
    """Whether the head is signed by its sender (a session-tagged head never is)."""
    if header.mac:
        return False
    try:
        public = _public_key(header.sender)
    except IdentityError:
        return False
    try:
        public.verify(sig, DOMAIN + part)
    except InvalidSignature:
        return False
    return True


def body_ok(header: Header, body: Buffer) -> bool:
    return nbytes(body) == header.body_len and digest(body) == header.digest


@lru_cache(maxsize=4096)
def _public_key(peer_id: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_bytes_from_peer_id(peer_id))


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def open_frame(
    frame: Frame, *, sender: str | None = None, mac_key: bytes | None = None
) -> tuple[Header, Buffer]:
    """Decode and fully verify a frame (signature or, with `mac_key`, the session tag; body
    digest; and `sender` when given)."""
    header, part, sig = decode_head(frame.head)
    if sender is not None and header.sender != sender:
        raise Refused(Reason.SENDER_MISMATCH, f"signed by {header.sender}, expected {sender}")
    if header.mac:
        if mac_key is None or not tag_ok(mac_key, part, sig):
            raise Refused(Reason.BAD_SIGNATURE, f"head not tagged by {header.sender}'s session")
    elif not signature_ok(header, part, sig):
        raise Refused(Reason.BAD_SIGNATURE, f"head not signed by {header.sender}")
    if not body_ok(header, frame.body):
        raise Refused(Reason.BAD_DIGEST, "body does not match the signed digest")
    return header, frame.body
