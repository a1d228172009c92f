"""A whole network in one event loop: a real orchestrator, three real miners, one validator.

The validator runs with `validator.audit = false`: the tests call its auditor's `tick` when they
want a round (commit for the open and the next window, audit every window closed since), so what
each round audits does not race with the run.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from node.config import load_node_config
from node.node_service import NodeService
from node.service import run_service
from p2p.binding import HotkeyBinding
from p2p.identity import NodeKey
from tests.mining.kit import SPEC
from tests.p2p.endpoint_kit import make_hotkey
from training.data.build import build_dataset

StartNode = Callable[..., Coroutine[Any, Any, NodeService]]


@pytest.fixture(scope="session")
def audit_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit-data")
    build_dataset(SPEC.data_config(path))
    return path


@pytest.fixture(scope="session")
def audit_hotkeys(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    path = tmp_path_factory.mktemp("audit-wallets")
    return [make_hotkey(path, f"a{i}") for i in range(6)]


@dataclass
class Network:
    orchestrator: NodeService
    miners: list[NodeService]
    validator: NodeService


@pytest.fixture
async def start_node(tmp_path: Path, audit_hotkeys: list[Any]) -> AsyncIterator[StartNode]:
    tasks: list[asyncio.Task[None]] = []

    async def start(
        name: str, roles: list[str], bootstrap: list[str] | None = None, **overrides: Any
    ) -> NodeService:
        index = len(tasks)
        config = load_node_config(
            None,
            {
                "admission.mode": "allowlist",
                "admission.hotkeys": [h.ss58_address for h in audit_hotkeys],
                "store.sync": False,
                **overrides,
                "node.home": str(tmp_path / name),
                "node.roles": roles,
                "http.listen": "127.0.0.1:0",
                "p2p.listen": ["/ip4/127.0.0.1/tcp/0"],
                "p2p.bootstrap": bootstrap or [],
                "p2p.peer_exchange_interval_s": 0.5,
            },
        )
        config.node.home.mkdir(parents=True, exist_ok=True)
        key = NodeKey.load_or_create(config.node.home / "node.key")
        binding = HotkeyBinding.create(audit_hotkeys[index], key.peer_id, ttl_s=3600)
        node = NodeService(config, key, binding=binding)
        task = asyncio.create_task(run_service(node), name=f"test-node/{name}")
        tasks.append(task)
        ready = asyncio.create_task(node.ready.wait())
        await asyncio.wait({ready, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert node.ready.is_set(), f"node {name} did not become ready"
        return node

    yield start
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        assert isinstance(result, asyncio.CancelledError), f"node did not stop cleanly: {result!r}"


@pytest.fixture
async def network(start_node: StartNode, audit_data: Path) -> Network:
    orch = await start_node(
        "orch",
        ["orchestrator"],
        **{
            "orchestrator.run": SPEC.to_record(),
            "orchestrator.eval_batches": 0,
            "orchestrator.tick_s": 0.05,
            "orchestrator.data_cache": str(audit_data),
        },
    )
    validator = await start_node(
        "validator",
        ["validator"],
        orch.p2p_addrs,
        **{
            "validator.audit": False,
            "validator.miners_per_window": 3,
            "validator.threads": 1,
            "validator.commit_ahead": 64,  # the tests tick rarely; windows are short
            "validator.t_decay": 100,
            "validator.data_cache": str(audit_data),
        },
    )
    miners = [
        await start_node(
            f"m{i}",
            ["miner"],
            orch.p2p_addrs,
            **{"miner.threads": 1, "miner.data_cache": str(audit_data)},
        )
        for i in range(SPEC.n_stages)
    ]
    return Network(orch, miners, validator)
