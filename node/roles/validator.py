"""Validator role: audits miners and sets weights on its chain for its subnet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from node.roles.base import RoleComponent

ChainName = Literal["devnet", "local", "test", "finney"]


@dataclass(kw_only=True, slots=True)
class ValidatorConfig:
    netuid: int = 9
    chain: ChainName = "devnet"

    def __post_init__(self) -> None:
        if not 0 <= self.netuid < 65536:
            raise ValueError(f"validator.netuid must be in 0..65535, got {self.netuid}")


class ValidatorComponent(RoleComponent[ValidatorConfig]):
    name = "validator"

    def status(self) -> dict[str, Any]:
        return {
            "chain": self.config.chain,
            "netuid": self.config.netuid,
            "hotkey": self.ctx.binding_hotkey,
        }
