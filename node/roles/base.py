"""What every role component shares: the node resources it may use and its status section."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from node.chain.link import ChainLink
from node.metrics import NodeMetrics
from node.peer_book import PeerBook
from node.service import Service, sleep_forever
from p2p.endpoint import Endpoint
from p2p.host import P2PHost
from store import Store


@dataclass(frozen=True, slots=True)
class RoleContext:
    """The node's shared resources handed to a role (never the whole node config)."""

    run_id: str
    home: Path
    store: Store
    host: P2PHost
    endpoint: Endpoint
    peers: PeerBook
    binding_hotkey: str | None
    metrics: NodeMetrics
    chain: ChainLink | None = None
    """The node's link to its subnet's chain (`[chain]`), if it has one."""


ConfigT = TypeVar("ConfigT")


class RoleComponent(Service, Generic[ConfigT]):
    """A role of the node: runs as a child service and fills one section of `/status`."""

    def __init__(self, config: ConfigT, ctx: RoleContext) -> None:
        super().__init__()
        self.config = config
        self.ctx = ctx

    async def run(self) -> None:
        """Roles that only answer messages have no body of their own."""
        await sleep_forever()

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """JSON-serialisable state shown under this role's name in `/status`."""
