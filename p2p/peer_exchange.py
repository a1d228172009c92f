"""Peer exchange protocol ``/tessera/peerx/1.0.0``: "which peers are you connected to, and where?"

Wire format: the requester opens a stream and sends one frame holding a msgpack map (empty
today, reserved for options); the responder answers with one frame holding a msgpack list of
``{"peer_id": str, "addrs": [str]}`` and closes. A frame is a 4-byte big-endian length and
that many bytes, at most ``MAX_FRAME`` (64 KiB); reads loop because ``stream.read(n)`` may
return fewer bytes.

Where the addresses come from: libp2p's identify runs automatically on every new connection
and each side announces its listen addresses in it; identify replaces the peerstore's addresses
for that peer with the announced ones. The responder therefore lists, for each connected peer,
the identify-announced addresses (a peer whose identify has not finished yet is left out until
the next round). ``dialable_addrs`` drops the ``/p2p`` suffix and rewrites unspecified hosts
(``0.0.0.0``, ``::``: a node listening on all interfaces) to the IP the connection actually
comes from, so what is returned is dialable rather than the peer's ephemeral source port.

This module holds only the codec and framing (no libp2p import); the host wires it up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from p2p.errors import PeerExchangeError

PROTOCOL_ID = "/tessera/peerx/1.0.0"
MAX_FRAME = 64 * 1024
MAX_PEERS_PER_RESPONSE = 200
MAX_ADDRS_PER_PEER = 8
_MAX_FIELD = 256
_UNSPECIFIED = {("ip4", "0.0.0.0"), ("ip6", "::")}
_B58 = set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


class Stream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...
    async def write(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """One entry of a peer exchange response."""

    peer_id: str
    addrs: tuple[str, ...]


def dialable_addrs(addrs: Iterable[str], remote_ip: str | None) -> list[str]:
    """Listen addrs without ``/p2p/...``; unspecified hosts replaced by `remote_ip` or dropped."""
    out: list[str] = []
    for addr in addrs:
        parts = addr.split("/p2p/")[0].split("/")
        if len(parts) < 3 or parts[0] != "":
            continue
        if (parts[1], parts[2]) in _UNSPECIFIED:
            if remote_ip is None or (":" in remote_ip) != (parts[1] == "ip6"):
                continue
            parts[2] = remote_ip
        clean = "/".join(parts)
        if clean not in out:
            out.append(clean)
    return out[:MAX_ADDRS_PER_PEER]


def encode_request() -> bytes:
    return msgpack.packb({})  # type: ignore[no-any-return]


def encode_response(records: Iterable[PeerRecord]) -> bytes:
    """Serialise `records`, dropping trailing entries so the frame stays under MAX_FRAME."""
    entries = [{"peer_id": r.peer_id, "addrs": list(r.addrs)} for r in records if r.addrs]
    entries = entries[:MAX_PEERS_PER_RESPONSE]
    while True:
        data: bytes = msgpack.packb(entries)
        if len(data) <= MAX_FRAME or not entries:
            return data
        entries = entries[: len(entries) // 2]


def decode_response(data: bytes) -> list[PeerRecord]:
    """Parse and validate a response; raises PeerExchangeError if anything is off."""
    try:
        raw: Any = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise PeerExchangeError(f"undecodable peer exchange response: {exc!r}") from None
    if not isinstance(raw, list) or len(raw) > MAX_PEERS_PER_RESPONSE:
        raise PeerExchangeError("peer exchange response is not a list of bounded length")
    return [_record(item) for item in raw]


def _record(item: Any) -> PeerRecord:
    if not isinstance(item, dict) or set(item) != {"peer_id", "addrs"}:
        raise PeerExchangeError(f"bad peer exchange entry: {item!r:.80}")
    peer_id, addrs = item["peer_id"], item["addrs"]
    if not (isinstance(peer_id, str) and 0 < len(peer_id) <= 128 and set(peer_id) <= _B58):
        raise PeerExchangeError(f"bad peer id in peer exchange entry: {peer_id!r:.80}")
    if not isinstance(addrs, list) or len(addrs) > MAX_ADDRS_PER_PEER:
        raise PeerExchangeError("bad address list in peer exchange entry")
    for addr in addrs:
        if not (isinstance(addr, str) and addr.startswith("/") and len(addr) <= _MAX_FIELD):
            raise PeerExchangeError(f"bad address in peer exchange entry: {addr!r:.80}")
    return PeerRecord(peer_id=peer_id, addrs=tuple(addrs))


async def write_frame(stream: Stream, payload: bytes) -> None:
    if len(payload) > MAX_FRAME:
        raise PeerExchangeError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    await stream.write(len(payload).to_bytes(4, "big") + payload)


async def read_frame(stream: Stream) -> bytes:
    """Read one length-prefixed frame, looping over partial reads."""
    size = int.from_bytes(await _read_exactly(stream, 4), "big")
    if size > MAX_FRAME:
        raise PeerExchangeError(f"peer announced a {size}-byte frame (limit {MAX_FRAME})")
    return await _read_exactly(stream, size)


async def _read_exactly(stream: Stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise PeerExchangeError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)
