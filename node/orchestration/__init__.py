"""Orchestrator core: miner registry, stage assignment, routes with leases, window clock, ledger.

Pure state machines over an injected clock, persisted in the node's LMDB store. No network I/O:
the node's p2p layer feeds verified messages in and dispatches the routes that come out.
"""

from node.orchestration.assignment import AssignmentConfig, assign_stages, count_moves
from node.orchestration.leases import LatencyModel, LeaseConfig
from node.orchestration.ledger import (
    Dispute,
    LedgerConfig,
    LedgerRefusal,
    ReceiptLedger,
    ReceiptRecord,
    Refusal,
)
from node.orchestration.orchestrator import Clock, OrchestrationConfig, Orchestrator
from node.orchestration.registry import Miner, MinerState, Registry, RegistryConfig
from node.orchestration.routes import (
    BatchRecord,
    BatchState,
    Direction,
    Hop,
    HopOutcome,
    Lease,
    Route,
    RouteState,
)
from node.orchestration.routing import Router, RoutingConfig
from node.orchestration.window import Phase, RunState, WindowClock, WindowConfig, WindowError

__all__ = [
    "AssignmentConfig",
    "BatchRecord",
    "BatchState",
    "Clock",
    "Direction",
    "Dispute",
    "Hop",
    "HopOutcome",
    "LatencyModel",
    "Lease",
    "LeaseConfig",
    "LedgerConfig",
    "LedgerRefusal",
    "Miner",
    "MinerState",
    "OrchestrationConfig",
    "Orchestrator",
    "Phase",
    "ReceiptLedger",
    "ReceiptRecord",
    "Refusal",
    "Registry",
    "RegistryConfig",
    "Route",
    "RouteState",
    "Router",
    "RoutingConfig",
    "RunState",
    "WindowClock",
    "WindowConfig",
    "WindowError",
    "assign_stages",
    "count_moves",
]
