"""CLI smoke in subprocesses: --help of every command, keygen, and `tessera status`."""

import re
import signal
import stat
from pathlib import Path

import pytest

from tests.node.procs import run_tessera, tessera, wait_endpoints

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", ["keygen", "node", "devnet", "status"])
def test_help(command: str) -> None:
    result = run_tessera(command, "--help")
    assert result.returncode == 0
    assert f"usage: tessera {command}" in result.stdout


def test_keygen_creates_key_and_binding_without_printing_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_tessera(
        "keygen",
        "--home",
        str(home),
        "--wallet-name",
        "w",
        "--test-wallet",
        "--wallet-path",
        str(tmp_path / "wallets"),
    )
    assert result.returncode == 0, result.stderr
    key_file = home / "node.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    seed_hex = key_file.read_text().splitlines()[1]
    assert seed_hex not in result.stdout + result.stderr
    assert re.search(r"peer id:\s+12D3KooW\w+", result.stdout)
    assert (home / "binding.json").exists() and "hotkey:" in result.stdout
    again = run_tessera("keygen", "--home", str(home))
    assert again.returncode == 0 and "existing" in again.stdout
    assert key_file.read_text().splitlines()[1] == seed_hex


def test_keygen_missing_wallet_is_clear(tmp_path: Path) -> None:
    result = run_tessera(
        "keygen",
        "--home",
        str(tmp_path),
        "--wallet-name",
        "absent",
        "--wallet-path",
        str(tmp_path / "wallets"),
    )
    assert result.returncode == 1
    assert "no hotkey 'default' in wallet 'absent'" in result.stderr


def test_status_prints_a_table(tmp_path: Path) -> None:
    run_tessera(
        "keygen",
        "--home",
        str(tmp_path),
        "--wallet-name",
        "v",
        "--test-wallet",
        "--wallet-path",
        str(tmp_path / "wallets"),
    )
    proc = tessera("node", "--home", str(tmp_path), "--role", "validator", "--http", "127.0.0.1:0")
    try:
        endpoints = wait_endpoints(tmp_path, proc)
        result = run_tessera("status", endpoints["http"])
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert any(re.match(rf"peer_id\s+{endpoints['peer_id']}$", line) for line in lines)
        assert any(re.match(r"validator\.scores\.t_decay\s+10$", line) for line in lines)
        assert any(re.match(r"hotkey\s+5\w+$", line) for line in lines)  # binding loaded
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    down = run_tessera("status", endpoints["http"], "--timeout", "2")
    assert down.returncode == 1 and "cannot read" in down.stderr
