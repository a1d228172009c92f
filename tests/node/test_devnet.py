"""`tessera devnet` brings up orchestrator, validator and three miners that all see each other."""

from pathlib import Path

import pytest

from tests.node.procs import run_tessera

pytestmark = pytest.mark.integration


def test_devnet_connects_everyone_and_stops_cleanly(tmp_path: Path) -> None:
    result = run_tessera(
        "devnet",
        "--home",
        str(tmp_path),
        "--miners",
        "3",
        "--validators",
        "1",
        "--exit-when-connected",
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every node has admitted every other" in result.stdout
    rows = [
        line
        for line in result.stdout.splitlines()
        if line.startswith(("orchestrator ", "validator0 ", "miner"))
    ]
    table = [r for r in rows if "http://" in r and " 4 " in r]
    assert len(table) == 5, result.stdout  # each of 5 nodes lists 4 peers
    for name in ("orchestrator", "validator0", "miner0", "miner1", "miner2"):
        log = (tmp_path / name / "node.log").read_text()
        assert "stopped cleanly (SIGTERM)" in log, log
