"""The shipped unit passes `systemd-analyze verify` with no complaint at all."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "tessera@.service"
pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (.ci/run installs it)",
)


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    # verify checks ExecStart exists, so point it at this environment's real `tessera`.
    tessera = Path(sys.executable).parent / "tessera"
    text = text.replace("/opt/tessera/venv/bin/tessera", str(tessera))
    (tmp_path / "tessera@.service").write_text(text)
    (tmp_path / "tessera@miner0.service").write_text(text)
    return subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "tessera@miner0.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    result = verify(tmp_path, UNIT.read_text())
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    result = verify(tmp_path, UNIT.read_text().replace("Type=notify", "Type=notfy"))
    assert "notfy" in result.stderr


def test_unit_has_the_promised_settings() -> None:
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert settings["Restart"] == "on-failure"
    assert settings["WatchdogSec"] and settings["StateDirectory"].startswith("tessera/")
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome"):
        assert key in settings
    assert "/etc/tessera/%i.toml" in settings["ExecStart"]
