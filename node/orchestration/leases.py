"""Lease budgets: how long a stage's miner may hold a hop, learned from observed hop times.

Per stage, an EWMA of the observed hop latency (forward compute plus backward compute, not the
time spent waiting on other stages) sets the budget `clamp(k * estimate, min_s, max_s)`.
Estimates persist in the `routes` table so a restarted orchestrator keeps what it learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from node.orchestration.keys import ROUTES, Keys
from store import ReadTxn, WriteTxn


@dataclass(kw_only=True, slots=True)
class LeaseConfig:
    """Lease deadlines: `clamp(k * EWMA(hop latency), min_s, max_s)` seconds."""

    initial_hop_s: float = 10.0
    """Latency estimate of a stage before any hop of it was observed."""
    k: float = 3.0
    min_s: float = 2.0
    max_s: float = 300.0
    ewma_alpha: float = 0.2
    """Weight of the newest sample."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_hop_s) and self.initial_hop_s > 0):
            raise ValueError(f"initial_hop_s must be positive, got {self.initial_hop_s}")
        if not (math.isfinite(self.k) and self.k > 0):
            raise ValueError(f"k must be positive, got {self.k}")
        if not 0 < self.min_s <= self.max_s or not math.isfinite(self.max_s):
            raise ValueError("need 0 < min_s <= max_s < inf")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha must be in (0, 1], got {self.ewma_alpha}")


class LatencyModel:
    """Per-stage hop-latency estimates and the lease budgets derived from them."""

    def __init__(self, keys: Keys, config: LeaseConfig, n_stages: int) -> None:
        self._keys = keys
        self.config = config
        self._n = n_stages

    def estimates(self, txn: ReadTxn) -> list[float]:
        stored = txn.get(ROUTES, self._keys.latency())
        if not isinstance(stored, list) or len(stored) != self._n:
            return [self.config.initial_hop_s] * self._n
        return [float(v) for v in stored]

    def budget(self, txn: ReadTxn, stage: int) -> float:
        """Seconds a hop of `stage` may take, forward and backward together."""
        c = self.config
        return min(c.max_s, max(c.min_s, c.k * self.estimates(txn)[stage]))

    def observe(self, txn: WriteTxn, stage: int, sample_s: float) -> float:
        """Folds one observed hop latency into the stage's estimate; returns the new estimate."""
        if not math.isfinite(sample_s) or sample_s < 0:
            return self.estimates(txn)[stage]
        values = self.estimates(txn)
        a = self.config.ewma_alpha
        values[stage] = a * sample_s + (1 - a) * values[stage]
        txn.put(ROUTES, self._keys.latency(), values)
        return values[stage]
