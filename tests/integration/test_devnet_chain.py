"""`tessera devnet` (the chain is on by default): a devnet chain node, every node registered on
it and admitting peers by the metagraph, the validator staked at genesis setting weights each
tempo, and Yuma epochs paying miners by validated work: a lazy miner whose every audit failed
gets no incentive, the honest ones share it."""

import json
from pathlib import Path

import pytest

from tests.integration.kit import tiny_run_args
from tests.node.procs import run_tessera

pytestmark = pytest.mark.integration


def test_devnet_chain_pays_miners_by_validated_work(tmp_path: Path, data_cache: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = run_tessera(
        "devnet", "--home", str(tmp_path / "net"), "--windows", "3", *tiny_run_args(),
        "--miners", "3", "--faults", "lazy", "--tempo", "8",  # the chain is on by default
        "--data-cache", str(data_cache), "--summary", str(summary_path), "--timeout", "120",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    chain = summary["chain"]
    assert chain["epochs"] >= 1, chain
    uids = {u["name"]: u for u in chain["uids"]}
    assert sorted(uids) == ["miner0", "miner1", "miner2", "orchestrator", "validator0"], chain
    assert uids["validator0"]["role"] == "validator" and uids["validator0"]["dividends"] > 0.99
    assert uids["validator0"]["emission"] > 0
    audits = summary["audits"]["validator0"]["miners"]
    assert audits["miner0"]["fail"] >= 1 and audits["miner0"]["pass"] == 0, audits
    honest = [uids[m] for m in ("miner1", "miner2")]
    assert all(u["incentive"] > 0 and u["emission"] > 0 for u in honest), chain
    if audits["miner0"]["inconclusive"] == 0:  # every audited window failed: no score left
        assert uids["miner0"]["incentive"] == 0, chain
    assert uids["miner0"]["incentive"] < min(u["incentive"] for u in honest), chain
    assert "validator0" in result.stdout and "incentive" in result.stdout
