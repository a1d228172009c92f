"""Real nodes in one event loop: each with its own home, LMDB store, libp2p host and HTTP server."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from node.config import load_node_config
from node.node_service import NodeService
from node.service import run_service
from p2p.binding import HotkeyBinding
from p2p.identity import NodeKey

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
        config = load_node_config(
            None,
            {
                "orchestrator.data_cache": str(data_cache),
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
        binding = HotkeyBinding.create(hotkey, key.peer_id, ttl_s=3600) if hotkey else None
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
