"""Hotkey binding: a real bittensor wallet's hotkey signs the peer id; the SDK verifies it."""

from pathlib import Path

import pytest
from bittensor_wallet import Wallet

from p2p.binding import HotkeyBinding
from p2p.errors import BindingError
from p2p.identity import NodeKey


@pytest.fixture(scope="module")
def hotkey(tmp_path_factory: pytest.TempPathFactory):
    wallet = Wallet(name="test", hotkey="hk", path=str(tmp_path_factory.mktemp("wallets")))
    wallet.create_new_coldkey(use_password=False, suppress=True, overwrite=True)
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    return wallet.hotkey


def test_binding_verifies_and_survives_a_file(hotkey, tmp_path: Path) -> None:
    key = NodeKey.generate()
    binding = HotkeyBinding.create(hotkey, key.peer_id, run_id="run-1", ttl_s=60, now=1000)
    binding.verify(peer_id=key.peer_id, run_id="run-1", now=1001)
    binding.save(tmp_path / "binding.json")
    loaded = HotkeyBinding.load(tmp_path / "binding.json")
    assert loaded == binding and loaded.hotkey == hotkey.ss58_address
    loaded.verify(peer_id=key.peer_id, run_id="run-1", now=1001)


def test_binding_refusals(hotkey) -> None:
    key, other = NodeKey.generate(), NodeKey.generate()
    binding = HotkeyBinding.create(hotkey, key.peer_id, run_id="run-1", ttl_s=60, now=1000)
    with pytest.raises(BindingError, match="names peer"):
        binding.verify(peer_id=other.peer_id, run_id="run-1", now=1001)
    with pytest.raises(BindingError, match="expired"):
        binding.verify(peer_id=key.peer_id, run_id="run-1", now=1060)
    with pytest.raises(BindingError, match="run"):
        binding.verify(peer_id=key.peer_id, run_id="run-2", now=1001)
    forged = HotkeyBinding(
        binding.hotkey, key.peer_id, "run-1", binding.expires_at + 3600, binding.signature
    )
    with pytest.raises(BindingError, match="does not verify"):
        forged.verify(peer_id=key.peer_id, run_id="run-1", now=1001)
    stolen = HotkeyBinding(
        binding.hotkey, other.peer_id, "run-1", binding.expires_at, binding.signature
    )
    with pytest.raises(BindingError, match="does not verify"):
        stolen.verify(peer_id=other.peer_id, run_id="run-1", now=1001)


def test_run_independent_binding_and_malformed(hotkey, tmp_path: Path) -> None:
    key = NodeKey.generate()
    binding = HotkeyBinding.create(hotkey, key.peer_id, ttl_s=60)
    binding.verify(peer_id=key.peer_id, run_id="any-run")
    (tmp_path / "b.json").write_text('{"hotkey": "x"}')
    with pytest.raises(BindingError, match="malformed"):
        HotkeyBinding.load(tmp_path / "b.json")
    bad = HotkeyBinding("not-an-address", key.peer_id, "", binding.expires_at, binding.signature)
    with pytest.raises(BindingError):
        bad.verify(peer_id=key.peer_id)
