"""Real miner nodes in one event loop, driven by a test-side node that speaks as orchestrator.

The test orchestrator is a real node started with role "orchestrator" (so its Hello says so and
miners admit it as one), but with its orchestrator component replaced by a stub: the test drives
its endpoint by hand. The run's (small) dataset is built once per session, before any miner
builds it from the same cache directory.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from node.node_service import NodeService
from node.roles.base import RoleComponent, RoleContext
from tests.mining.kit import SPEC
from tests.node_kit import start_local_node
from tests.p2p.endpoint_kit import make_hotkey
from training.data.build import build_dataset
from training.data.dataset import Dataset

StartNode = Callable[..., Coroutine[Any, Any, NodeService]]


class StubOrchestrator(RoleComponent[Any]):
    name = "orchestrator"

    def status(self) -> dict[str, Any]:
        return {"stub": True}


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run-data")


@pytest.fixture(scope="session")
def dataset(data_cache: Path) -> Dataset:
    return build_dataset(SPEC.data_config(data_cache))


@pytest.fixture(scope="session")
def hotkeys(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    path = tmp_path_factory.mktemp("wallets")
    return [make_hotkey(path, f"m{i}") for i in range(4)]


@pytest.fixture
async def start_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hotkeys: list[Any]
) -> AsyncIterator[StartNode]:
    original = NodeService._make_role

    def make_role(self: NodeService, name: str, ctx: RoleContext) -> RoleComponent[Any]:
        if name == "orchestrator":
            return StubOrchestrator(None, ctx)
        return original(self, name, ctx)

    monkeypatch.setattr(NodeService, "_make_role", make_role)
    tasks: list[asyncio.Task[None]] = []

    async def start(
        name: str,
        roles: list[str],
        bootstrap: list[str] | None = None,
        *,
        hotkey: Any,
        **overrides: Any,
    ) -> NodeService:
        admitted = [h.ss58_address for h in hotkeys]
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
