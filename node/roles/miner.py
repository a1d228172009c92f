"""Miner role: declares its capacity and (once assigned by the orchestrator) holds one stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.roles.base import RoleComponent


@dataclass(kw_only=True, slots=True)
class MinerConfig:
    capacity: float = 1.0
    """Declared relative compute capacity; the orchestrator assigns stages weighted by it."""

    def __post_init__(self) -> None:
        if not self.capacity > 0:
            raise ValueError(f"miner.capacity must be > 0, got {self.capacity}")


class MinerComponent(RoleComponent[MinerConfig]):
    name = "miner"

    def status(self) -> dict[str, Any]:
        return {
            "capacity": self.config.capacity,
            "stage": None,
            "hotkey": self.ctx.binding_hotkey,
        }
