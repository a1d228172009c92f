"""The Grafana dashboard under systemd/ charts only metrics that nodes export: every metric its
queries name is in the /metrics of a chain-linked orchestrator, validator or miner."""

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.chain.kit import link_settings
from tests.mining.kit import SPEC
from tests.node_kit import start_local_node
from tests.p2p.endpoint_kit import make_hotkey

DASHBOARD = Path(__file__).resolve().parents[2] / "systemd" / "grafana-dashboard.json"
NETUID = 5


def queried_metrics(dashboard: dict[str, Any]) -> set[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {name for e in exprs for name in re.findall(r"\btessera_[a-z0-9_]+", e)}


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "instance"}
    assert len(queried_metrics(dashboard)) >= 20


async def test_every_charted_metric_is_exported(tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    names = ("chain", "orch", "val", "miner")
    hotkeys = [make_hotkey(wallets, name) for name in names]
    admitted = [h.ss58_address for h in hotkeys]
    roles = {"orch": "orchestrator", "val": "validator", "miner": "miner"}
    chain_settings: dict[str, Any] = {
        "devnet_chain.netuid": NETUID,
        "devnet_chain.block_time_s": 0.05,
    }
    tasks: list[asyncio.Task[None]] = []
    exported: set[str] = set()
    try:
        chain, task = await start_local_node(
            tmp_path / "chain", ["chain"], hotkeys[0], admitted, **chain_settings
        )
        tasks.append(task)
        nodes = [chain]
        for name, hotkey in zip(names[1:], hotkeys[1:], strict=True):
            extra = {"orchestrator.run": SPEC.to_record()} if name == "orch" else {}
            node, task = await start_local_node(
                tmp_path / name, [roles[name]], hotkey, admitted, chain.p2p_addrs,
                **link_settings(wallets, name, NETUID), **extra,
            )  # fmt: skip
            tasks.append(task)
            nodes.append(node)
        async with aiohttp.ClientSession() as session:
            for node in nodes:
                async with session.get(f"{node.http_url}/metrics") as response:
                    text = await response.text()
                exported |= set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    wanted = queried_metrics(json.loads(DASHBOARD.read_text()))
    assert wanted <= exported, sorted(wanted - exported)
