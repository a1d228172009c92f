"""Real nodes in one event loop: each with its own home, LMDB store, libp2p host and HTTP server."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from node.node_service import NodeService
from tests import node_kit

StartNode = Callable[..., Coroutine[Any, Any, NodeService]]


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One corpus/tokenizer cache for every node of the test session (built once, ~7 s)."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture
async def start_node(tmp_path: Path, data_cache: Path) -> AsyncIterator[StartNode]:
    tasks: list[asyncio.Task[None]] = []

    async def start(
        name: str,
        roles: list[str],
        bootstrap: list[str] | None = None,
        *,
        hotkey: Any = None,
        **overrides: Any,
    ) -> NodeService:
        settings = {"orchestrator.data_cache": str(data_cache), **overrides}
        node, task = await node_kit.start_node(
            tmp_path / name, roles, hotkey=hotkey, bootstrap=bootstrap, timeout=30, **settings
        )
        tasks.append(task)
        return node

    yield start
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        assert isinstance(result, asyncio.CancelledError), f"node did not stop cleanly: {result!r}"
