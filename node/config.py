"""The node's configuration: one section per component, loaded from TOML, overridden by flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from node.chain.config import ChainConfig, DevnetChainConfig
from node.config_loader import ConfigError, build, load_toml, merge_dotted
from node.roles import ROLE_NAMES, MinerConfig, OrchestratorConfig, ValidatorConfig
from node.status_http import HttpConfig
from p2p.admission import AdmissionConfig
from p2p.host import HostConfig
from p2p.limits import LimitsConfig
from store import StoreConfig

LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(kw_only=True, slots=True)
class NodeSection:
    home: Path = field(default_factory=lambda: Path("~/.tessera").expanduser())
    roles: list[str] = field(default_factory=list)
    run_id: str = "devnet"
    """The training run this node takes part in; messages of other runs are refused."""
    log_level: LogLevel = "info"
    shutdown_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        unknown = [r for r in self.roles if r not in ROLE_NAMES]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r} (roles: {', '.join(ROLE_NAMES)})")
        self.roles = list(dict.fromkeys(self.roles))
        if not self.run_id or any(c.isspace() for c in self.run_id):
            raise ValueError(f"node.run_id must be a non-empty word, got {self.run_id!r}")
        if self.shutdown_timeout_s <= 0:
            raise ValueError("node.shutdown_timeout_s must be > 0")


@dataclass(kw_only=True, slots=True)
class NodeConfig:
    node: NodeSection = field(default_factory=NodeSection)
    http: HttpConfig = field(default_factory=HttpConfig)
    p2p: HostConfig = field(default_factory=HostConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    orchestrator: OrchestratorConfig = field(default_factory=OrchestratorConfig)
    miner: MinerConfig = field(default_factory=MinerConfig)
    validator: ValidatorConfig = field(default_factory=ValidatorConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    devnet_chain: DevnetChainConfig = field(default_factory=DevnetChainConfig)


def load_node_config(path: Path | None, overrides: dict[str, Any]) -> NodeConfig:
    """Defaults < TOML file < overrides (dotted keys from flags). Raises ConfigError."""
    data = load_toml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    cfg = build(NodeConfig, data, source=source)
    if overrides:
        cfg = build(NodeConfig, merge_dotted(data, overrides), source=f"{source} + flags")
    if not cfg.node.roles:
        raise ConfigError("no role given: use --role (or node.roles in the config file)")
    return cfg
