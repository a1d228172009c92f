"""Real `tessera node` processes: roles, signals, crash, config errors, systemd notify."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.node.procs import REPO, free_port, get_json, run_tessera, tessera, wait_endpoints

pytestmark = pytest.mark.integration


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, float, str]:
    start = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=20)
    return proc.returncode, time.monotonic() - start, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_combined_roles_then_clean_stop(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    proc = tessera(
        "node",
        "--home",
        str(tmp_path),
        "--role",
        "miner",
        "--role",
        "validator",
        "--http",
        f"127.0.0.1:{port}",
    )
    endpoints = wait_endpoints(tmp_path, proc)
    assert endpoints["http"] == f"http://127.0.0.1:{port}"
    status = get_json(f"http://127.0.0.1:{port}/status")
    assert status["roles"] == ["miner", "validator"]
    assert "miner" in status and "validator" in status
    assert status["peer_id"] == endpoints["peer_id"]
    code, seconds, out = stop(proc, sig)
    assert code == 0, out
    assert seconds < 5, f"stop took {seconds:.1f}s"
    assert f"stopping: {sig.name} received" in out
    assert not (tmp_path / "endpoints.json").exists()
    # state survives: the same identity comes back on restart
    proc = tessera("node", "--home", str(tmp_path), "--role", "miner", "--http", "127.0.0.1:0")
    assert wait_endpoints(tmp_path, proc)["peer_id"] == endpoints["peer_id"]
    assert stop(proc, signal.SIGTERM)[0] == 0


CRASHING_NODE = """
import asyncio, sys
from node.config import load_node_config
from node.daemon import run_node
from node.service import Service

class Crash(Service):
    name = "crash"
    async def run(self):
        await asyncio.sleep(0.5)
        raise RuntimeError("deliberate crash")

cfg = load_node_config(None, {"node.home": sys.argv[1], "node.roles": ["miner"],
                              "http.listen": "127.0.0.1:0"})
sys.exit(run_node(cfg, extra_services=[Crash()]))
"""


def test_crashing_task_exits_non_zero(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_NODE, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "node crashed: deliberate crash" in result.stderr


def test_http_port_in_use_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_tessera(
            "node", "--home", str(tmp_path), "--role", "miner", "--http", f"127.0.0.1:{port}"
        )
    assert result.returncode == 1
    assert f"cannot serve HTTP on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--role", "miner", "--set", "store.map_size_mib=lots"], "'store.map_size_mib'"),
        (["--role", "miner", "--set", "p2p.nonsense=1"], "unknown key 'p2p.nonsense'"),
        (["--config", "/nonexistent/tessera.toml", "--role", "miner"], "/nonexistent/tessera.toml"),
        ([], "no role given"),
        (
            [
                "--role",
                "miner",
                "--chain",
                "test",
                "--set",
                'chain.wallet_name="nobody"',
                "--set",
                'chain.wallet_path="/nonexistent/wallets"',
            ],
            "no hotkey 'default'",
        ),
    ],
)
def test_config_errors_exit_2_without_traceback(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    result = run_tessera("node", "--home", str(tmp_path), *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_in_file_names_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[http]\nport = 8080\n")
    result = run_tessera("node", "--config", str(cfg), "--role", "miner")
    assert result.returncode == 2
    assert "unknown key 'http.port'" in result.stderr and str(cfg) in result.stderr


def test_ready_watchdog_stopping_on_notify_socket(tmp_path: Path) -> None:
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(30)
        proc = tessera(
            "node",
            "--home",
            str(tmp_path / "home"),
            "--role",
            "orchestrator",
            "--http",
            "127.0.0.1:0",
            env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"},
        )
        messages: list[str] = []
        while not any(m.startswith("READY=1") for m in messages):
            messages.append(sock.recv(4096).decode())
        while "WATCHDOG=1" not in messages:
            messages.append(sock.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(4096).decode())
        assert proc.wait(timeout=20) == 0
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert "STATUS=serving http://127.0.0.1:" in ready


BUSY_NODE = """
import asyncio, sys, torch
from node.config import load_node_config
from node.daemon import run_node
from node.daemon_thread import in_daemon_thread
from node.service import Service

def replay():  # stands in for an audit replay: torch work in a daemon thread
    a = torch.randn(512, 512)
    while True:
        a = torch.tanh(a @ a)

class Busy(Service):
    name = "busy"
    async def run(self):
        print("BUSY", flush=True)
        await in_daemon_thread(replay, name="audit")

cfg = load_node_config(None, {"node.home": sys.argv[1], "node.roles": ["validator"],
                              "http.listen": "127.0.0.1:0"})
sys.exit(run_node(cfg, extra_services=[Busy()]))
"""


def test_stop_while_torch_works_in_a_thread_exits_zero(tmp_path: Path) -> None:
    """The validator could exit -6 (SIGABRT) when stopped during a replay: the interpreter
    finalised while a daemon thread was inside torch. Regression of that stop."""
    codes = []
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", BUSY_NODE, str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        while "BUSY" not in proc.stdout.readline():
            pass
        time.sleep(0.5)
        code, _, out = stop(proc, signal.SIGTERM)
        codes.append(code)
        assert code == 0, out[-2000:]
    assert codes == [0, 0, 0]
