"""`tessera devnet --runs`: two training runs side by side on one subnet, each on its own
mechanism, and the chain splitting the miners' emission between them by the runs' shares."""

import json
from pathlib import Path

import pytest

from tests.integration.kit import tiny_run_args
from tests.node.procs import run_tessera

pytestmark = pytest.mark.integration


def test_two_runs_train_side_by_side_and_split_the_emission(
    tmp_path: Path, data_cache: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    result = run_tessera(
        "devnet", "--home", str(tmp_path / "net"), "--runs", "tiny:0.3,tiny:0.7",
        # A validator audits from the window open when its orchestrator first admits it, which
        # is after the chain's first epoch gave it a permit: a short tempo, so that is window 0.
        "--windows", "4", *tiny_run_args(), "--stages", "2", "--miners", "2", "--tempo", "4",
        "--data-cache", str(data_cache), "--summary", str(summary_path), "--timeout", "180",
        timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(summary_path.read_text())
    runs = doc["runs"]
    assert sorted(runs) == ["tiny0", "tiny1"] and doc["complete"]
    for run_id, share, mechanism in (("tiny0", 0.3, 0), ("tiny1", 0.7, 1)):
        run = runs[run_id]
        assert (run["share"], run["mechanism"], run["windows"]) == (share, mechanism, 4)
        assert run["final_loss"] < run["first_loss"], run
        assert run["emission_share"] == pytest.approx(share, abs=0.05), runs
        weights = run["weights"][f"{run_id}-validator0"]  # its validator scored its own miners
        assert sorted(weights) == [f"{run_id}-miner0", f"{run_id}-miner1"], run
    uids = {u["name"]: u for u in doc["chain"]["uids"]}
    # One validator hotkey for both runs: a single uid, paid dividends from both mechanisms.
    assert [n for n in uids if "validator" in n] == ["validator0"]
    assert uids["validator0"]["dividends"] > 0.99
    assert len(uids) == 2 + 4 + 1
    assert "tiny1 (tiny, 0.7)" in result.stdout and "its miners got" in result.stdout
