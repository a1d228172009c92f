"""A short chaos schedule (bench/chaos.py): the orchestrator killed during a stage merge, the
validator and a miner killed, a flaky miner and one on a small store; the run completes, learns,
and every acknowledged receipt and signed verdict is still in LMDB afterwards."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_short_chaos_schedule_loses_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "bench/chaos.py", "--windows", "6", "--miner-kills", "1",
         "--validator-kills", "1", "--orchestrator-kills", "1", "--seed", "3", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=290, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["completed"] and report["windows"] == 6
    assert report["loss_last"] < report["loss_first"]
    assert [k["node"][:5] for k in report["kills"]].count("orche") == 1
    assert len(report["kills"]) == 3
    assert report["lost_receipts"] == 0 and report["receipts_checked"] > 0
    assert report["lost_verdicts"] == 0
    assert report["audits"]["fail"] == 0  # every miner is honest: crashes make gaps, not fails
    assert report["survivors_up"]
