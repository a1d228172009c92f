"""CLI smoke in subprocesses: --help of every command, keygen, `tessera status` and `top`."""

import json
import re
import signal
import stat
from pathlib import Path

import pytest

from tests.node.procs import run_tessera, tessera, wait_endpoints

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", ["keygen", "node", "devnet", "status", "top"])
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


def test_status_prints_sections_within_100_columns(tmp_path: Path) -> None:
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
        assert max(len(line) for line in lines) <= 100
        peer = endpoints["peer_id"]
        assert re.match(rf"NODE  validator · run devnet · peer {peer[:8]}…{peer[-6:]} · ", lines[0])
        assert re.search(r"hotkey 5\w{7}…\w{6}", lines[0])  # binding loaded
        assert any(line.startswith("AUDITS  through window None: 0 pass") for line in lines)
        assert any(line.startswith("PAY  score book") for line in lines)
        assert any(line.startswith("PEERS  0 connected") for line in lines)
        raw = run_tessera("status", endpoints["http"], "--json")
        assert json.loads(raw.stdout)["peer_id"] == peer
        assert json.loads(raw.stdout)["validator"]["scores"]["t_decay"] == 10
        top = tessera("top", endpoints["http"], "--interval", "0.3", "--width", "100")
        assert top.stdout is not None
        shown = []
        for line in top.stdout:  # two redraws, then Ctrl-C
            shown.append(line)
            if sum("NODE  validator" in line for line in shown) >= 2:
                break
        top.send_signal(signal.SIGINT)
        out, _ = top.communicate(timeout=10)
        assert top.returncode == 0, out
        frames = "".join([*shown, out]).split("\x1b[H\x1b[2J")[1:]
        assert len(frames) >= 2 and all(f.startswith("NODE  validator") for f in frames)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    down = run_tessera("status", endpoints["http"], "--timeout", "2")
    assert down.returncode == 1 and "cannot read" in down.stderr
