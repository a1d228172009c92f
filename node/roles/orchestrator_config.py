"""The orchestrator role's configuration: the run it publishes and how it drives it."""

from __future__ import annotations

from dataclasses import dataclass, field

from node.orchestration import LeaseConfig, RegistryConfig
from node.run_control.merger import MergeConfig
from training.run_spec import RunSpec


@dataclass(kw_only=True, slots=True)
class OrchestratorConfig:
    run: RunSpec = field(default_factory=RunSpec)
    """The training run published to miners (`[orchestrator.run]`)."""
    windows: int = 0
    """Stop issuing work after this many windows (0: run until stopped)."""
    max_in_flight: int = 0
    """Batches routed at once; 0 = the run's `accumulate`."""
    lockstep: bool = True
    """Issue batches in groups of `max_in_flight` and wait for each group to finish, so every
    miner's optimizer step covers exactly the same micro-batches as one-process training."""
    tick_s: float = 0.1
    assign_timeout_s: float = 120.0
    """How long a miner may take to build its stage (dataset, model, weights) on Assign."""
    close_timeout_s: float = 60.0
    data_cache: str = ""
    """Directory of the built corpus and tokenizer; empty = `<home>/data`."""
    eval_batches: int = 4
    """Held-out batches per domain evaluated at each window end (0: no evaluation)."""
    threads: int = 1
    """torch threads for the evaluation (0: torch's default)."""
    record_windows: int = 64
    """Windows whose receipts and routes the store keeps (validators audit a window soon after
    it closes); older ones are deleted, their summaries stay in the run's history."""
    history_windows: int = 10_000
    """Closed windows whose records the run's history keeps (`/status`, the dashboard's curves);
    older ones are forgotten, their batches, seconds and work kept as the run's totals."""
    max_miners_per_stage: int = 0
    """Miners routed per stage (0: no limit); the rest stand by. The miners of a stage merge
    their weights at each window end (`[orchestrator.merge]`)."""
    wait_for_validators: int = 0
    """Hold the first window until this many validators follow the run (ask where it is), so
    that every window has an auditor committed to it (0: start as soon as every stage is held).
    A validator on the chain needs its permit first: up to one tempo."""
    leases: LeaseConfig = field(default_factory=LeaseConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)

    def __post_init__(self) -> None:
        limits = (self.windows, self.max_in_flight, self.eval_batches, self.max_miners_per_stage)
        if min(*limits, self.wait_for_validators) < 0:
            raise ValueError(
                "orchestrator.windows, max_in_flight, eval_batches, max_miners_per_stage and "
                "wait_for_validators must be >= 0"
            )
        if self.record_windows < 2 or self.history_windows < 2:
            raise ValueError("orchestrator.record_windows and history_windows must be >= 2")
        if not (self.tick_s > 0 and self.assign_timeout_s > 0 and self.close_timeout_s > 0):
            raise ValueError("orchestrator.tick_s and timeouts must be > 0")

    @property
    def in_flight(self) -> int:
        return self.max_in_flight or self.run.accumulate
