"""Routes: one miner per stage for one attempt at one batch, with each hop's progress.

A hop's lease is armed while its miner owes work: the forward pass from the moment the
previous stage's output exists, the backward pass from the moment the next stage's gradient
exists (at the last stage, right after its own forward). While the miner waits for downstream
stages its lease is paused. One budget covers a hop's forward and backward together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"


class RouteState(StrEnum):
    OPEN = "open"
    DONE = "done"
    EXPIRED = "expired"


class HopOutcome(StrEnum):
    """What `complete_hop` did with a report."""

    RECORDED = "recorded"
    ROUTE_DONE = "route_done"
    DUPLICATE = "duplicate"
    NOT_OPEN = "not_open"
    UNKNOWN = "unknown"


def route_id_for(window: int, batch: int, attempt: int) -> str:
    return f"{window}.{batch}.{attempt}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A miner's current obligation on a route: finish `direction` of `stage` by `deadline`."""

    route_id: str
    stage: int
    miner: str
    direction: Direction
    deadline: float


@dataclass(slots=True, kw_only=True)
class Hop:
    """Progress of one stage of a route; times are clock readings, None until they happen."""

    miner: str
    budget_s: float = 0.0
    fwd_at: float | None = None
    fwd_done: float | None = None
    bwd_at: float | None = None
    bwd_done: float | None = None
    deadline: float | None = None
    exact: bool = True
    """False once a time was inferred from a later hop's report rather than observed."""

    @property
    def finished(self) -> bool:
        return self.bwd_done is not None

    def to_record(self) -> dict[str, Any]:
        return {
            "miner": self.miner,
            "budget_s": self.budget_s,
            "fwd_at": self.fwd_at,
            "fwd_done": self.fwd_done,
            "bwd_at": self.bwd_at,
            "bwd_done": self.bwd_done,
            "deadline": self.deadline,
            "exact": self.exact,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Hop:
        def opt(name: str) -> float | None:
            value = record.get(name)
            return None if value is None else float(value)

        return cls(
            miner=str(record["miner"]),
            budget_s=float(record["budget_s"]),
            fwd_at=opt("fwd_at"),
            fwd_done=opt("fwd_done"),
            bwd_at=opt("bwd_at"),
            bwd_done=opt("bwd_done"),
            deadline=opt("deadline"),
            exact=bool(record["exact"]),
        )


@dataclass(slots=True, kw_only=True)
class Route:
    """One attempt at a batch; a copy loaded from the store (changing it changes nothing)."""

    route_id: str
    window: int
    batch: int
    attempt: int
    issued_at: float
    hops: list[Hop] = field(default_factory=list)
    state: RouteState = RouteState.OPEN
    replaces: str | None = None
    finished_at: float | None = None

    @property
    def miners(self) -> tuple[str, ...]:
        """The miner of each stage, stage 0 first."""
        return tuple(h.miner for h in self.hops)

    def leases(self) -> list[Lease]:
        """The armed leases (hops whose miner owes work now)."""
        return [
            Lease(
                route_id=self.route_id,
                stage=stage,
                miner=hop.miner,
                direction=Direction.FORWARD if hop.fwd_done is None else Direction.BACKWARD,
                deadline=hop.deadline,
            )
            for stage, hop in enumerate(self.hops)
            if hop.deadline is not None
        ]

    def to_record(self) -> dict[str, Any]:
        return {
            "route_id": self.route_id,
            "window": self.window,
            "batch": self.batch,
            "attempt": self.attempt,
            "issued_at": self.issued_at,
            "hops": [h.to_record() for h in self.hops],
            "state": self.state.value,
            "replaces": self.replaces,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Route:
        finished = record.get("finished_at")
        replaces = record.get("replaces")
        return cls(
            route_id=str(record["route_id"]),
            window=int(record["window"]),
            batch=int(record["batch"]),
            attempt=int(record["attempt"]),
            issued_at=float(record["issued_at"]),
            hops=[Hop.from_record(h) for h in record["hops"]],
            state=RouteState(record["state"]),
            replaces=None if replaces is None else str(replaces),
            finished_at=None if finished is None else float(finished),
        )


class BatchState(StrEnum):
    OPEN = "open"
    WAITING = "waiting"
    DONE = "done"
    DROPPED = "dropped"


@dataclass(slots=True, kw_only=True)
class BatchRecord:
    """A batch of a window: the routes tried for it, in order, and how it ended."""

    window: int
    batch: int
    state: BatchState = BatchState.WAITING
    routes: list[str] = field(default_factory=list)
    reason: str | None = None
    finished_at: float | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "batch": self.batch,
            "state": self.state.value,
            "routes": list(self.routes),
            "reason": self.reason,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BatchRecord:
        finished, reason = record.get("finished_at"), record.get("reason")
        return cls(
            window=int(record["window"]),
            batch=int(record["batch"]),
            state=BatchState(record["state"]),
            routes=[str(r) for r in record["routes"]],
            reason=None if reason is None else str(reason),
            finished_at=None if finished is None else float(finished),
        )
