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

from node.node_service import NodeService
from tests.mining.kit import SPEC
from tests.node_kit import start_local_node
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
        admitted = [h.ss58_address for h in audit_hotkeys]
        hotkey = audit_hotkeys[len(tasks)]
        node, task = await start_local_node(
            tmp_path / name, roles, hotkey, admitted, bootstrap, **overrides
        )
        tasks.append(task)
        return node

    yield start
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        assert isinstance(result, asyncio.CancelledError), f"node did not stop cleanly: {result!r}"


def orchestrator_settings(data: Path) -> dict[str, Any]:
    """The test run's orchestrator: the kit's spec, no evaluation, a fast tick."""
    return {
        "orchestrator.run": SPEC.to_record(),
        "orchestrator.eval_batches": 0,
        "orchestrator.tick_s": 0.05,
        "orchestrator.data_cache": str(data),
    }


def validator_settings(data: Path) -> dict[str, Any]:
    """The test validator: audits only when a test calls its auditor's `tick`, every miner."""
    return {
        "validator.audit": False,
        "validator.miners_per_window": 3,
        "validator.threads": 1,
        "validator.data_cache": str(data),
    }


@pytest.fixture
async def network(start_node: StartNode, audit_data: Path) -> Network:
    orch = await start_node("orch", ["orchestrator"], **orchestrator_settings(audit_data))
    validator = await start_node(
        "validator",
        ["validator"],
        orch.p2p_addrs,
        **{
            **validator_settings(audit_data),
            "validator.commit_ahead": 64,  # the tests tick rarely; windows are short
            "validator.t_decay": 100,
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
