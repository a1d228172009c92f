"""`tessera devnet`: the connect-only network (real processes) and its run plan, progress line
and summary (pure functions)."""

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from node.devnet.net import DevnetPlan, toml_value
from node.devnet.progress import ProgressView, progress_line
from node.devnet.summary import audit_summary, build_summary, write_summary
from tests.node.procs import run_tessera


@pytest.mark.integration
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
    (dashboard,) = [x for x in result.stdout.splitlines() if x.startswith("devnet: dashboard of")]
    rows = [
        line
        for line in result.stdout.splitlines()
        if line.startswith(("orchestrator ", "validator0 ", "miner", "chain "))
    ]
    table = [r for r in rows if "http://" in r and " 5 " in r]
    assert len(table) == 6, result.stdout  # each of 6 nodes (the chain's too) lists 5 peers
    (orchestrator,) = [r.split() for r in table if r.startswith("orchestrator ")]
    url = next(part for part in orchestrator if part.startswith("http://"))
    assert dashboard == f"devnet: dashboard of orchestrator: {url}/"
    for name in ("orchestrator", "validator0", "miner0", "miner1", "miner2"):
        log = (tmp_path / name / "node.log").read_text()
        assert "stopped cleanly (SIGTERM)" in log, log


def test_devnet_rejects_unknown_model(tmp_path: Path) -> None:
    result = run_tessera("devnet", "--home", str(tmp_path), "--windows", "1", "--model", "nope")
    assert result.returncode == 2
    assert "unknown --model 'nope'" in result.stderr


@pytest.mark.integration
def test_devnet_reports_a_node_that_fails_to_start(tmp_path: Path) -> None:
    result = run_tessera(
        "devnet", "--home", str(tmp_path), "--windows", "1", "--set", "bogus.key=1", timeout=60
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "chain exited with 2" in result.stderr  # the first node started
    assert "unknown key 'bogus'" in result.stderr


def test_plan_nodes_and_sets(tmp_path: Path) -> None:
    plan = DevnetPlan(
        stages=2,
        miners=3,
        validators=1,
        windows=4,
        run={"model": "tiny", "lr": 0.004, "batch_size": 4},
        threads=2,
        sets=["orchestrator.leases.min_s=1.0"],
    )
    assert [s.name for s in plan.specs()] == [
        "orchestrator",
        "validator0",
        "miner0",
        "miner1",
        "miner2",
    ]
    sets = plan.node_sets(tmp_path)
    cache = json.dumps(str(tmp_path / "data"))
    assert f"orchestrator.data_cache={cache}" in sets
    assert f"miner.data_cache={cache}" in sets
    assert "miner.threads=2" in sets
    assert "orchestrator.windows=4" in sets
    assert "orchestrator.run.n_stages=2" in sets
    assert 'orchestrator.run.model="tiny"' in sets
    assert "orchestrator.run.lr=0.004" in sets
    assert f"validator.data_cache={cache}" in sets
    assert "validator.threads=2" in sets  # the replay runs with the miners' torch threads
    assert not any(s.startswith("validator.miners_per_window") for s in sets)
    assert sets[-1] == "orchestrator.leases.min_s=1.0"  # the user's own come last and win
    assert [s.fault for s in plan.specs()] == ["", "", "", "", ""]
    cheats = DevnetPlan(stages=3, miners=3, windows=2, faults=["lazy", "copycat"])
    assert [(s.name, s.fault) for s in cheats.specs() if s.role == "miner"] == [
        ("miner0", "lazy"),
        ("miner1", "copycat"),
        ("miner2", ""),
    ]
    assert "validator.miners_per_window=3" in cheats.node_sets(tmp_path)  # every miner audited
    with pytest.raises(ValueError, match="2 faults for 1 miners"):
        DevnetPlan(stages=1, miners=1, faults=["lazy", "nan"])
    assert DevnetPlan(stages=3).miner_count == 6  # two per stage by default
    assert DevnetPlan(sets=["a.b=1"]).node_sets(tmp_path) == ["a.b=1"]  # connect-only: no run


def test_toml_values() -> None:
    assert toml_value("small") == '"small"'
    assert toml_value(3) == "3"
    assert toml_value(0.5) == "0.5"
    assert toml_value(True) == "true"


def orchestrator_section(**over: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "run_id": "devnet",
        "spec": {"model": "tiny", "n_stages": 2},
        "windows_target": 2,
        "done": False,
        "window": 1,
        "phase": "train",
        "progress": {"step": 6, "tokens": 3072, "tokens_per_s": 512.0, "loss": 5.25},
        "batches": {"total": 8, "completed": 4},
        "history": [
            {
                "window": 0,
                "loss": 6.0,
                "tokens": 2048,
                "seconds": 4.0,
                "tokens_per_s": 512.0,
                "eval": {"code": {"loss": 5.5, "perplexity": 244.7}},
                "weights": {"0": "ab", "1": "cd"},
                "merged": {"0": 2},
            }
        ],
        "work": {"peerA": {"forward": 12, "backward": 12}},
        "stages": [
            {"stage": 0, "miners": [{"peer_id": "peerA"}]},
            {"stage": 1, "miners": [{"peer_id": "peerB"}]},
        ],
    }
    section.update(over)
    return section


def test_progress_line() -> None:
    line = progress_line(orchestrator_section(), windows=2)
    assert line.startswith("window 2/2 [###############-----] 4/8 batches")
    assert "step 6" in line and "loss 5.2500" in line and "512 tok/s" in line
    assert "train" in line
    assert "waiting" in progress_line(None, windows=3)
    partial = progress_line({"window": 0}, windows=3)  # keys missing until the run starts
    assert partial.startswith("window 1/3 [") and "loss -" in partial
    assert progress_line(orchestrator_section(done=True, window=2), 2).endswith("done")
    held = orchestrator_section(window=0, waiting_for_validators=1)
    assert progress_line(held, 2).endswith("waiting for 1 validator")
    assert progress_line({**held, "waiting_for_validators": 2}, 2).endswith("for 2 validators")
    assert progress_line({**held, "waiting_for_validators": 0}, 2).endswith("train")


def test_progress_view_plain_lines_on_window_change() -> None:
    out = io.StringIO()
    view = ProgressView(2, out, every_s=3600)
    view.update(orchestrator_section(window=0))
    view.update(orchestrator_section(window=0))
    view.update(orchestrator_section(window=1))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.startswith("devnet: window") for line in lines)


def test_summary_from_status(tmp_path: Path) -> None:
    section = orchestrator_section(done=True)
    miners = {
        "miner0": ("peerA", {"miner": {"stage": 0, "forward": 99, "backward": 99}}),
        "miner1": ("peerB", {"miner": {"stage": 1, "forward": 7, "backward": 6}}),
        "miner2": ("peerC", None),  # never answered
    }
    doc = build_summary(section, miners, model="small", stages=3, wall_s=12.5)
    assert doc["model"] == "tiny" and doc["stages"] == 2  # the orchestrator's spec wins
    assert doc["complete"] is True
    assert doc["windows"] == [
        {
            "window": 0,
            "loss": 6.0,
            "tokens": 2048,
            "seconds": 4.0,
            "tokens_per_s": 512.0,
            "merged": {"0": 2},
            "eval": {"code": {"loss": 5.5, "perplexity": 244.7}},
        }
    ]
    assert doc["final_loss"] == 6.0 and doc["tokens_per_s"] == 512.0
    assert doc["perplexity"] == {"code": 244.7}
    assert doc["work_per_miner"] == {
        "miner0": {"peer_id": "peerA", "stage": 0, "forward": 12, "backward": 12},
        "miner1": {"peer_id": "peerB", "stage": 1, "forward": 7, "backward": 6},
        "miner2": {"peer_id": "peerC", "stage": None, "forward": 0, "backward": 0},
    }
    path = tmp_path / "out" / "summary.json"
    write_summary(path, doc)
    assert json.loads(path.read_text()) == doc
    empty = build_summary(None, {}, model="small", stages=3, wall_s=1.0)
    assert empty["complete"] is False and empty["windows"] == [] and empty["final_loss"] is None
    assert empty["model"] == "small" and empty["stages"] == 3


def test_devnet_rejects_unknown_or_too_many_faults(tmp_path: Path) -> None:
    result = run_tessera("devnet", "--home", str(tmp_path), "--windows", "1", "--faults", "lazy,x")
    assert result.returncode == 2
    assert "unknown --faults ['x']" in result.stderr
    result = run_tessera(
        "devnet",
        "--home",
        str(tmp_path),
        "--stages",
        "1",
        "--windows",
        "1",
        "--faults",
        "lazy,nan,stale",
    )
    assert result.returncode == 2
    assert "more --faults than miners" in result.stderr


def test_audit_summary_names_miners() -> None:
    section = {
        "next_window": 3,
        "verdicts": {"pass": 4, "fail": 2, "inconclusive": 1},
        "audited": {
            "peerA": {"pass": 3, "fail": 0, "inconclusive": 0},
            "peerB": {"pass": 0, "fail": 2, "inconclusive": 1},
        },
        "scores": {"incentives": {"peerA": 12.0, "peerB": 4.0, "peerC": 8.0}},
        "quality": {
            "ranking": ["peerA", "peerB"],
            "weights": {"peerA": 0.75, "peerB": 0.0},
            "quality_multipliers": {"peerA": 2.0, "peerB": 0.0},
            "cpu_s": 0.5,
        },
    }
    doc = audit_summary(section, {"peerA": "miner0", "peerB": "miner1"})
    quality = doc.pop("quality")
    assert quality["ranking"] == ["miner0", "miner1"]
    assert quality["weights"] == {"miner0": 0.75, "miner1": 0.0}
    assert quality["quality_multipliers"] == {"miner0": 2.0, "miner1": 0.0}
    assert quality["cpu_s"] == 0.5
    assert doc == {
        "audited_windows": 3,
        "verdicts": {"pass": 4, "fail": 2, "inconclusive": 1},
        "miners": {
            "miner0": {"pass": 3, "fail": 0, "inconclusive": 0, "incentive": 12.0},
            "miner1": {"pass": 0, "fail": 2, "inconclusive": 1, "incentive": 4.0},
            "peerC": {"pass": 0, "fail": 0, "inconclusive": 0, "incentive": 8.0},
        },
    }
    empty = {"audited_windows": 0, "verdicts": {}, "miners": {}, "quality": {}}
    assert audit_summary(None, {}) == empty


def test_runs_flag_plans_one_mechanism_per_run(tmp_path: Path) -> None:
    from node.devnet.command import parse_runs

    runs = parse_runs("tiny:0.3,small:0.7")
    assert [(r.run_id, r.model, r.share) for r in runs] == [
        ("tiny", "tiny", 0.3), ("small", "small", 0.7),
    ]  # fmt: skip
    assert [r.run_id for r in parse_runs("tiny:0.5,tiny:0.5")] == ["tiny0", "tiny1"]
    for bad in ("tiny:0.3,small:0.3", "tiny", "tiny:x", "tiny:0,small:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_runs(bad)
    plan = DevnetPlan(stages=1, miners=1, windows=2, chain=True, runs=runs)
    specs = {s.name: s for s in plan.specs()}
    assert sorted(specs) == [
        "chain", "small-miner0", "small-orchestrator", "small-validator0",
        "tiny-miner0", "tiny-orchestrator", "tiny-validator0",
    ]  # fmt: skip
    assert specs["small-validator0"].wallet == specs["tiny-validator0"].wallet == "validator0"
    sets = plan.run_sets(specs["small-validator0"], tmp_path)
    assert "validator.mechanism=1" in sets and 'orchestrator.run.model="small"' in sets
    assert f"miner.data_cache={json.dumps(str(tmp_path / 'data' / 'small'))}" in sets
    hotkeys = {name: f"hk-{specs[name].wallet or name}" for name in specs}
    chain = plan.chain_sets(specs["chain"], tmp_path, hotkeys)
    assert any('"mechanism_split" = [0.3, 0.7]' in s for s in chain), chain
    assert any('{"hk-validator0" = 1000.0}' in s for s in chain), chain
    serve = {n: plan.chain_sets(specs[n], tmp_path, hotkeys) for n in specs if n != "chain"}
    assert "chain.serve=false" in serve["small-validator0"]  # one endpoint per hotkey
    assert "chain.serve=true" in serve["tiny-validator0"]
    with pytest.raises(ValueError):
        DevnetPlan(windows=2, chain=False, runs=runs)
