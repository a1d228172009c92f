"""Node key: persistence, file mode, secrecy, and peer-id equality with libp2p's derivation."""

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2p.errors import IdentityError
from p2p.identity import NodeKey, public_bytes_from_peer_id, verify_by_peer_id


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_peer_id_matches_libp2p(seed: bytes) -> None:
    key = NodeKey(seed=seed)
    libp2p_id = ID.from_pubkey(create_new_key_pair(seed).public_key).to_base58()
    assert key.peer_id == libp2p_id
    assert public_bytes_from_peer_id(key.peer_id) == key.public_bytes


def test_save_load_roundtrip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "home" / "node.key"
    key = NodeKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert NodeKey.load_or_create(path) == key  # persisted, not regenerated
    assert NodeKey.load(path).peer_id == key.peer_id


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    NodeKey.generate().save(path)
    before = path.read_bytes()
    with pytest.raises(IdentityError, match="already exists"):
        NodeKey.generate().save(path)
    assert path.read_bytes() == before


def test_refuses_key_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    NodeKey.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="readable by others"):
        NodeKey.load(path)


def test_corrupt_and_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    with pytest.raises(IdentityError, match="keygen"):
        NodeKey.load(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"tessera-ed25519-v1\nnot-hex\n")
    os.close(fd)
    with pytest.raises(IdentityError, match="corrupt"):
        NodeKey.load(path)


def test_repr_hides_secret() -> None:
    key = NodeKey.generate()
    assert key.seed.hex() not in repr(key) and key.peer_id in repr(key)


def test_signature_verifies_by_peer_id() -> None:
    key, other = NodeKey.generate(), NodeKey.generate()
    sig = key.sign(b"hello")
    assert verify_by_peer_id(key.peer_id, b"hello", sig)
    assert not verify_by_peer_id(key.peer_id, b"hellO", sig)
    assert not verify_by_peer_id(other.peer_id, b"hello", sig)
    with pytest.raises(IdentityError):
        public_bytes_from_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
