"""Per-peer session keys: symmetric MACs for envelopes between admitted peers.

Each process holds an X25519 key pair for its life and announces the public half in its signed
Hello (or Welcome). Once two peers have each other's, both derive the same two keys, one per
direction, from the Diffie-Hellman secret, the two peer ids and both public halves. Envelopes
between them then carry a keyed blake3 tag instead of an Ed25519 signature: the same
authentication of the sender and integrity of head and body digest for a microsecond instead of
about 200 (a signature and its verification). What a tag does not give is proof to a third
party, so statements others keep as evidence (receipts, verdicts) stay signed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import blake3
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

TAG_LEN = 64
_CONTEXT = "tessera 2026-12 envelope session key v1"
_MAC_DOMAIN = b"tessera/envelope-mac/1\x00"


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The keys of one peer pair: `send` tags what we send, `recv` checks what it sends."""

    send: bytes
    recv: bytes


class SessionSecret:
    """This process's X25519 key pair."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public_hex = self._private.public_key().public_bytes_raw().hex()

    def keys_with(self, me: str, peer: str, peer_public_hex: str) -> SessionKeys | None:
        """The pair's keys, or None when the peer announced no (or no valid) public key."""
        try:
            public = X25519PublicKey.from_public_bytes(bytes.fromhex(peer_public_hex))
            shared = self._private.exchange(public)
        except ValueError:
            return None

        def one(sender: str, sender_pub: str, receiver: str, receiver_pub: str) -> bytes:
            material = "\x00".join((sender, sender_pub, receiver, receiver_pub)).encode()
            return blake3.blake3(shared + material, derive_key_context=_CONTEXT).digest()

        return SessionKeys(
            send=one(me, self.public_hex, peer, peer_public_hex),
            recv=one(peer, peer_public_hex, me, self.public_hex),
        )


def tag(key: bytes, part: bytes) -> bytes:
    return blake3.blake3(_MAC_DOMAIN + part, key=key).digest(length=TAG_LEN)


def tag_ok(key: bytes, part: bytes, candidate: bytes) -> bool:
    return hmac.compare_digest(tag(key, part), candidate)
