"""The node's Ed25519 identity key, its file on disk (mode 0600) and the libp2p peer id it yields.

The peer id is computed here exactly as libp2p derives it (identity multihash of the protobuf
encoded public key, base58btc), so the CLI can show it without importing libp2p.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2p.errors import IdentityError

KEY_FILE_MAGIC = b"tessera-ed25519-v1\n"
_PROTOBUF_ED25519_PREFIX = b"\x08\x01\x12\x20"  # KeyType=Ed25519(1), Data=32 bytes
_IDENTITY_MULTIHASH = b"\x00\x24"  # code 0x00, length 36


def peer_id_from_public_bytes(public: bytes) -> str:
    """Base58 libp2p peer id of a raw 32-byte Ed25519 public key."""
    if len(public) != 32:
        raise IdentityError(f"an Ed25519 public key has 32 bytes, got {len(public)}")
    return base58.b58encode(_IDENTITY_MULTIHASH + _PROTOBUF_ED25519_PREFIX + public).decode()


def public_bytes_from_peer_id(peer_id: str) -> bytes:
    """Inverse of :func:`peer_id_from_public_bytes`; raises IdentityError for other key types."""
    try:
        raw = base58.b58decode(peer_id)
    except ValueError as exc:
        raise IdentityError(f"not a base58 peer id: {peer_id!r}") from exc
    prefix = _IDENTITY_MULTIHASH + _PROTOBUF_ED25519_PREFIX
    if len(raw) != len(prefix) + 32 or not raw.startswith(prefix):
        raise IdentityError(f"not an Ed25519 peer id: {peer_id!r}")
    return raw[len(prefix) :]


def verify_by_peer_id(peer_id: str, message: bytes, signature: bytes) -> bool:
    """True when `signature` over `message` was made by the key behind `peer_id`."""
    public = Ed25519PublicKey.from_public_bytes(public_bytes_from_peer_id(peer_id))
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class NodeKey:
    """An Ed25519 private key held as its 32-byte seed."""

    seed: bytes
    _private: Ed25519PrivateKey = field(init=False, repr=False, compare=False)
    _peer_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise IdentityError(f"an Ed25519 seed has 32 bytes, got {len(self.seed)}")
        key = Ed25519PrivateKey.from_private_bytes(self.seed)  # derived once: every seal signs
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_private", key)
        object.__setattr__(self, "_peer_id", peer_id_from_public_bytes(public))

    def __repr__(self) -> str:  # never show the secret
        return f"NodeKey(peer_id={self.peer_id})"

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(seed=os.urandom(32))

    @property
    def public_bytes(self) -> bytes:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def save(self, path: Path) -> None:
        """Write the key with mode 0600, atomically; refuses to overwrite an existing file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, KEY_FILE_MAGIC + self.seed.hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise IdentityError(f"{path} already exists; not overwriting a node key") from exc
        finally:
            tmp.unlink()

    @classmethod
    def load(cls, path: Path) -> NodeKey:
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise IdentityError(f"no node key at {path} (run `tessera keygen`)") from exc
        except OSError as exc:
            raise IdentityError(f"cannot read node key {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(
                f"{path} is readable by others (mode {oct(mode & 0o777)}); chmod 600"
            )
        if not data.startswith(KEY_FILE_MAGIC):
            raise IdentityError(f"{path} is not a tessera node key")
        try:
            seed = bytes.fromhex(data[len(KEY_FILE_MAGIC) :].decode().strip())
        except (UnicodeDecodeError, ValueError) as exc:
            raise IdentityError(f"{path} is corrupt") from exc
        return cls(seed=seed)

    @classmethod
    def load_or_create(cls, path: Path) -> NodeKey:
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        key.save(path)
        return key
