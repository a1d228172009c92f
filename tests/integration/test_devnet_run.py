"""`tessera devnet --windows 2` trains the tiny model over real processes and writes a summary."""

import json
from pathlib import Path

import pytest

from tests.integration.kit import tiny_run_args
from tests.node.procs import run_tessera

pytestmark = pytest.mark.integration


def test_devnet_trains_two_windows_with_falling_loss(tmp_path: Path, data_cache: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = run_tessera(
        "devnet",
        "--no-chain",  # the chain's own test: test_devnet_chain.py
        "--home",
        str(tmp_path / "net"),
        "--stages",
        "3",
        "--validators",
        "1",
        "--windows",
        "2",
        *tiny_run_args(),
        "--data-cache",
        str(data_cache),
        "--summary",
        str(summary_path),
        "--timeout",
        "80",
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["complete"] is True
    assert summary["model"] == "tiny" and summary["stages"] == 3
    windows = summary["windows"]
    assert [w["window"] for w in windows] == [0, 1], windows
    assert all(w["tokens"] == 8 * 4 * 64 for w in windows), windows
    assert windows[-1]["loss"] < windows[0]["loss"], windows
    assert summary["final_loss"] == windows[-1]["loss"]
    assert summary["tokens_per_s"] > 0
    assert summary["perplexity"] and all(p > 1 for p in summary["perplexity"].values())
    # Two miners per stage by default: every batch went through one miner of each stage, and
    # each stage's two miners merged at every window end.
    work = summary["work_per_miner"]
    assert sorted(work) == [f"miner{i}" for i in range(6)]
    assert sorted(w["stage"] for w in work.values()) == [0, 0, 1, 1, 2, 2], work
    for stage in range(3):
        rows = [w for w in work.values() if w["stage"] == stage]
        assert sum(w["backward"] for w in rows) >= 16, work  # 8 batches x 2 windows
        assert all(w["backward"] > 0 for w in rows), work
    assert all(w["merged"] == {"0": 2, "1": 2, "2": 2} for w in windows), windows
    # The validator audited the merged miners from their own post-merge checkpoints.
    audits = summary["audits"]["validator0"]
    assert audits["audited_windows"] == 2, audits
    assert audits["verdicts"].get("fail", 0) == 0 and audits["verdicts"]["pass"] >= 1, audits
    for i in range(6):
        log = (tmp_path / "net" / f"miner{i}" / "node.log").read_text()
        assert "stopped cleanly (SIGTERM)" in log, log[-2000:]
    for name in ("orchestrator", "validator0"):
        log = (tmp_path / "net" / name / "node.log").read_text()
        assert "stopped cleanly (SIGTERM)" in log, log[-2000:]


def test_devnet_with_faults_zeroes_the_cheaters(tmp_path: Path, data_cache: Path) -> None:
    """`--faults lazy,copycat`: miner0 and miner1 cheat all run; the validator audits every
    miner of every window, fails the cheaters' windows and keeps the honest miner's score."""
    summary_path = tmp_path / "summary.json"
    result = run_tessera(
        "devnet",
        "--no-chain",  # the chain's own test: test_devnet_chain.py
        "--home",
        str(tmp_path / "net"),
        "--windows",
        "2",
        *tiny_run_args(),
        "--miners",
        "3",
        "--faults",
        "lazy,copycat",
        "--data-cache",
        str(data_cache),
        "--summary",
        str(summary_path),
        "--timeout",
        "80",
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    faults = {name: w["fault"] for name, w in summary["work_per_miner"].items()}
    assert faults == {"miner0": "lazy", "miner1": "copycat", "miner2": ""}
    audits = summary["audits"]["validator0"]
    assert audits["audited_windows"] == 2, audits
    miners = audits["miners"]
    assert sorted(miners) == ["miner0", "miner1", "miner2"], audits
    honest = miners["miner2"]
    assert honest["fail"] == 0 and honest["pass"] >= 1, audits
    assert honest["incentive"] > 0, audits
    for cheater in ("miner0", "miner1"):
        row = miners[cheater]
        assert row["fail"] >= 1 and row["pass"] == 0, (cheater, audits)
        assert row["incentive"] < honest["incentive"], (cheater, audits)
        if row["inconclusive"] == 0:  # every window failed: nothing left to score
            assert row["incentive"] == 0, (cheater, audits)
    assert "miner0 (lazy)" in result.stdout and "miner2 (honest)" in result.stdout
