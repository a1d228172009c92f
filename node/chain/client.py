"""`ChainClient`: what a node asks of the chain its subnet lives on, whichever chain that is.

Every method returns the project's own records (`node.chain.records`) and raises `ChainError`
with the chain's reason; implementations never block the event loop. `DevnetChain`
(`node.chain.devnet_client`) talks to a `--role chain` node over p2p.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from node.chain.records import Hyperparams, Metagraph


class ChainClient(Protocol):
    @property
    def hotkey(self) -> str:
        """The hotkey (SS58) this client signs extrinsics with."""
        ...

    async def block(self) -> int: ...

    async def metagraph(self, netuid: int) -> Metagraph: ...

    async def hyperparams(self, netuid: int) -> Hyperparams: ...

    async def weights(self, netuid: int) -> dict[int, dict[int, int]]:
        """Per validator uid, the weights (u16) it set."""
        ...

    async def register(self, netuid: int) -> int:
        """Register this hotkey on the subnet; its uid."""
        ...

    async def serve(self, netuid: int, endpoint: str) -> None:
        """Publish this node's libp2p multiaddr for the hotkey."""
        ...

    async def set_weights(
        self, netuid: int, weights: Mapping[int, float], *, mechid: int = 0
    ) -> int:
        """Set (or, under commit-reveal, commit) weights on the subnet's mechanism `mechid`;
        the block it was included at."""
        ...
