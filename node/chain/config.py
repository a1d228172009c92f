"""The chain role's settings (`[devnet_chain]`): which subnet it keeps, its block time, the
genesis stakes and the subnet's hyperparameters (`[devnet_chain.params]`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from node.chain.records import Hyperparams


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
