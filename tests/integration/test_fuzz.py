"""A short fuzz run (bench/fuzz.py, about 1,000 malformed inputs) at a real node process: it stays
up, answers /healthz, refuses everything with a reason code and keeps its memory and sockets."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_a_thousand_malformed_inputs_leave_the_node_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "bench/fuzz.py", "--inputs", "1000", "--seed", "7", "--json",
         "--corpus", str(tmp_path / "corpus")],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["inputs"] == 1000
    assert report["crashes"] == 0 and report["healthz_failures"] == 0
    assert report["refusals_without_reason"] == 0, report["findings"]
    assert report["all_refusals_counted"]
    assert len(report["refusals"]) >= 10  # the inputs reached many different checks
    before, after = report["node"]["before"], report["node"]["after_peer_left"]
    assert after["rss_mib"] <= 1.2 * before["rss_mib"]
    assert after["fds"] <= before["fds"] + 5
    assert not (tmp_path / "corpus").exists()  # nothing broke a goal
