"""Role components; a node runs the ones named by `--role`, each a Service with a status section."""

from node.roles.base import RoleComponent, RoleContext
from node.roles.miner import MinerComponent, MinerConfig
from node.roles.orchestrator import OrchestratorComponent, OrchestratorConfig
from node.roles.validator import ValidatorComponent, ValidatorConfig

ROLE_NAMES = ("orchestrator", "miner", "validator", "chain")

__all__ = [
    "ROLE_NAMES",
    "MinerComponent",
    "MinerConfig",
    "OrchestratorComponent",
    "OrchestratorConfig",
    "RoleComponent",
    "RoleContext",
    "ValidatorComponent",
    "ValidatorConfig",
]
