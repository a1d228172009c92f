"""Orchestrator role: owns the run identity and its registry of peers seen on the network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.roles.base import RoleComponent
from node.service import sleep_forever


@dataclass(kw_only=True, slots=True)
class OrchestratorConfig:
    run_id: str = "devnet"

    def __post_init__(self) -> None:
        if not self.run_id or any(c.isspace() for c in self.run_id):
            raise ValueError(f"run_id must be a non-empty word, got {self.run_id!r}")


class OrchestratorComponent(RoleComponent[OrchestratorConfig]):
    name = "orchestrator"

    async def run(self) -> None:
        with self.ctx.store.write() as txn:
            if txn.get("runs", self.config.run_id) is None:
                txn.put("runs", self.config.run_id, {"run_id": self.config.run_id, "window": 0})
        await sleep_forever()

    def status(self) -> dict[str, Any]:
        with self.ctx.store.read() as txn:
            run = txn.get("runs", self.config.run_id) or {}
        return {
            "run_id": self.config.run_id,
            "window": run.get("window", 0),
            "registered_peers": self.ctx.peers.count(),
        }
