"""Starting real nodes (LMDB, libp2p host, HTTP, roles) in the caller's event loop on loopback,
optionally bound to a test hotkey and admitting only the given hotkeys: for tests and benches."""

import asyncio
from pathlib import Path
from typing import Any

from node.config import load_node_config
from node.node_service import NodeService
from node.service import run_service
from p2p.binding import HotkeyBinding
from p2p.identity import NodeKey


async def start_local_node(
    home: Path,
    roles: list[str],
    hotkey: Any,
    admitted: list[str],
    bootstrap: list[str] | None = None,
    **overrides: Any,
) -> tuple[NodeService, "asyncio.Task[None]"]:
    """A started node admitting only `admitted` and its task (cancel it to stop the node)."""
    settings: dict[str, Any] = {
        "admission.mode": "allowlist",
        "admission.hotkeys": admitted,
        "store.sync": False,
        **overrides,
    }
    return await start_node(home, roles, hotkey=hotkey, bootstrap=bootstrap, **settings)


async def start_node(
    home: Path,
    roles: list[str],
    *,
    hotkey: Any = None,
    bootstrap: list[str] | None = None,
    timeout: float = 60.0,
    **overrides: Any,
) -> tuple[NodeService, "asyncio.Task[None]"]:
    """A started node (bound to `hotkey` if given) and its task; raises if it fails to start."""
    config = load_node_config(
        None,
        {
            **overrides,
            "node.home": str(home),
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
    task = asyncio.create_task(run_service(node), name=f"node/{home.name}")
    ready = asyncio.create_task(node.ready.wait())
    await asyncio.wait({ready, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    if not node.ready.is_set():
        ready.cancel()
        task.cancel()
        raise TimeoutError(f"node {home.name} did not become ready")
    return node, task
