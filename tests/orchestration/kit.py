"""Shared helpers for orchestrator-core tests: configs, a settable clock, receipt fields."""

from __future__ import annotations

from typing import Any

from node.orchestration import (
    AssignmentConfig,
    Direction,
    LeaseConfig,
    OrchestrationConfig,
    Orchestrator,
    RegistryConfig,
    RoutingConfig,
    WindowConfig,
)

T0 = 1000.0
LEASES = LeaseConfig(initial_hop_s=10.0, k=2.0, min_s=1.0, max_s=100.0, ewma_alpha=0.5)


def make_config(
    *,
    n_stages: int = 2,
    per_stage: int | None = 1,
    batches: int = 4,
    in_flight: int = 4,
    max_attempts: int = 3,
    max_misses: int = 3,
    leases: LeaseConfig = LEASES,
    run_id: str = "run-a",
    lockstep: bool = False,
    group_size: int = 1,
) -> OrchestrationConfig:
    return OrchestrationConfig(
        run_id=run_id,
        assignment=AssignmentConfig(n_stages=n_stages, max_miners_per_stage=per_stage),
        registry=RegistryConfig(suspect_after_s=30.0, gone_after_s=120.0, max_misses=max_misses),
        leases=leases,
        routing=RoutingConfig(max_attempts=max_attempts),
        window=WindowConfig(
            batches_per_window=batches,
            max_in_flight=in_flight,
            lockstep=lockstep,
            group_size=group_size,
        ),
    )


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = T0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def digest(n: int) -> bytes:
    return n.to_bytes(32, "big")


def receipt(
    window: int, batch: int, stage: int, direction: str, inp: int, out: int
) -> dict[str, Any]:
    return {
        "window": window,
        "batch": batch,
        "stage": stage,
        "direction": direction,
        "input_digest": digest(inp),
        "output_digest": digest(out),
        "weights_version": "v0",
    }


def run_route(orch: Orchestrator, route_id: str, n: int, start: float, hop_s: float) -> float:
    """Completes every hop of a route, each taking `hop_s`; returns the finishing time."""
    t = start
    for stage in range(n):
        t += hop_s
        orch.complete_hop(route_id, stage, Direction.FORWARD, now=t)
    for stage in reversed(range(n)):
        t += hop_s
        orch.complete_hop(route_id, stage, Direction.BACKWARD, now=t)
    return t
