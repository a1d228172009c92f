"""Orchestrator role: owns the run identity and its registry of peers seen on the network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.roles.base import RoleComponent
from node.service import sleep_forever


@dataclass(kw_only=True, slots=True)
class OrchestratorConfig:
    window_s: float = 60.0
    """Length of a training window (the pipeline work drives windows by this clock)."""

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"orchestrator.window_s must be > 0, got {self.window_s}")


class OrchestratorComponent(RoleComponent[OrchestratorConfig]):
    name = "orchestrator"

    async def run(self) -> None:
        with self.ctx.store.write() as txn:
            if txn.get("runs", self.ctx.run_id) is None:
                txn.put("runs", self.ctx.run_id, {"run_id": self.ctx.run_id, "window": 0})
        await sleep_forever()

    def status(self) -> dict[str, Any]:
        with self.ctx.store.read() as txn:
            run = txn.get("runs", self.ctx.run_id) or {}
        return {
            "run_id": self.ctx.run_id,
            "window_s": self.config.window_s,
            "window": run.get("window", 0),
            "registered_peers": self.ctx.peers.count(),
        }
