"""Chain settings: a node's link to its subnet's chain (`[chain]`), and the chain role's own
(`[devnet_chain]`: which subnet it keeps, its block time, the genesis stakes and the subnet's
hyperparameters, `[devnet_chain.params]`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from node.chain.bittensor_chain import NETWORKS
from node.chain.records import Hyperparams


@dataclass(kw_only=True, slots=True)
class ChainConfig:
    network: str = ""
    """"" (no chain: the node runs without one), "devnet" (a `--role chain` node among the
    peers), or a bittensor network for `BittensorChain` ("test", "finney", "local", a ws URL)."""
    netuid: int = 9
    chain_peer: str = ""
    """devnet: the chain node's peer id ("" = the first admitted peer with the chain role)."""
    register: bool = False
    """Register the hotkey when it has no uid (devnets; on a real subnet it costs TAO)."""
    serve: bool = False
    """Publish the node's multiaddr for its hotkey."""
    wallet_name: str = ""
    wallet_hotkey: str = "default"
    wallet_path: str = "~/.bittensor/wallets"
    refresh_s: float = 12.0
    """How often the metagraph is read again."""

    def __post_init__(self) -> None:
        if not 0 <= self.netuid < 65536:
            raise ValueError(f"chain.netuid must be in 0..65535, got {self.netuid}")
        if not (math.isfinite(self.refresh_s) and self.refresh_s > 0):
            raise ValueError("chain.refresh_s must be a positive number of seconds")
        known = ("", "devnet", *NETWORKS)
        if self.network not in known and not self.network.startswith(("ws://", "wss://")):
            raise ValueError(f"chain.network must be one of {known} or a ws(s):// URL")
        if self.network and not self.wallet_name:
            raise ValueError("chain.wallet_name: a chain needs the hotkey that signs for this node")


@dataclass(kw_only=True, slots=True)
class DevnetChainConfig:
    netuid: int = 9
    block_time_s: float = 1.0
    stakes: dict[str, float] = field(default_factory=dict)
    """Genesis stake per hotkey (SS58), applied when the chain first starts."""
    params: Hyperparams = field(default_factory=Hyperparams)

    def __post_init__(self) -> None:
        if not 0 <= self.netuid < 65536:
            raise ValueError(f"devnet_chain.netuid must be in 0..65535, got {self.netuid}")
        if not (math.isfinite(self.block_time_s) and self.block_time_s > 0):
            raise ValueError("devnet_chain.block_time_s must be a positive number of seconds")
        if any(not (math.isfinite(v) and v > 0) for v in self.stakes.values()):
            raise ValueError("devnet_chain.stakes must be positive")
