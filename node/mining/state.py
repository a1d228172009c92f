"""What the miner holds right now: its stage (engine, dataset, spec), window and open batches.

One `MinerState` is shared by the miner's parts and only touched on the event loop; the compute
thread receives a `StageHolding` with each job and never reads the state itself. A batch is
*open* on this stage from the moment its forward is accepted until its backward is computed (or
it is forgotten); open batches are what the miner's `max_inflight` bounds.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

from p2p.messages import WeightsReport
from training.data.dataset import Dataset
from training.engine import StageEngine
from training.run_spec import RunSpec
from training.wire import WireFormat

BatchKey = tuple[int, int, str]
"""(window, batch, route): a batch on one route; the engine's batch id."""

STANDBY = -1


@dataclass(slots=True, eq=False)
class StageHolding:
    """One assigned stage: its engine and the data and spec it was built from."""

    spec: RunSpec
    record: dict[str, Any]
    stage: int
    weights: str
    """The checkpoint blob the engine's state corresponds to ("" = seed init, never stepped),
    advanced to each window's reported checkpoint."""
    engine: StageEngine
    dataset: Dataset

    @property
    def n_stages(self) -> int:
        return self.spec.n_stages

    @property
    def is_first(self) -> bool:
        return self.stage == 0

    @property
    def is_last(self) -> bool:
        return self.stage == self.spec.n_stages - 1

    @property
    def act_shape(self) -> tuple[int, int, int]:
        """The shape of every activation and gradient exchanged with a neighbour."""
        return self.wire.shape

    @property
    def wire(self) -> WireFormat:
        """How activations and gradients cross to and from the neighbours."""
        return self.spec.wire_format()


@dataclass(slots=True)
class OpenBatch:
    ticket: bytes
    miners: list[str]
    opened_at: float = field(default_factory=time.monotonic)
    forwarded: bool = False
    backward_queued: bool = False


class OpenBatches:
    """Open batches of the held stage, plus a short memory of finished ones (for duplicates)."""

    def __init__(self, *, remember: int = 256) -> None:
        self.open: dict[BatchKey, OpenBatch] = {}
        self._done: OrderedDict[BatchKey, bytes] = OrderedDict()
        self._remember = remember

    def __len__(self) -> int:
        return len(self.open)

    def add(self, key: BatchKey, ticket: bytes, miners: list[str]) -> None:
        self.open[key] = OpenBatch(ticket, miners)

    def finish(self, key: BatchKey) -> None:
        batch = self.open.pop(key, None)
        if batch is not None:
            self._done[key] = batch.ticket
            while len(self._done) > self._remember:
                self._done.popitem(last=False)

    def drop(self, key: BatchKey) -> None:
        self.open.pop(key, None)

    def finished_with(self, key: BatchKey, ticket: bytes) -> bool:
        """Whether `key` finished recently under this same ticket (a duplicate delivery)."""
        return self._done.get(key) == ticket

    def expired(self, max_age_s: float, now: float | None = None) -> list[BatchKey]:
        now = time.monotonic() if now is None else now
        return [
            k
            for k, b in self.open.items()
            if b.forwarded and not b.backward_queued and now - b.opened_at > max_age_s
        ]

    def of_windows_up_to(self, window: int) -> list[BatchKey]:
        return [k for k in self.open if k[0] <= window]

    def clear(self) -> None:
        self.open.clear()
        self._done.clear()


@dataclass(slots=True)
class MinerState:
    peer_id: str
    run_id: str
    holding: StageHolding | None = None
    assigned: tuple[dict[str, Any], int, str] | None = None
    """(spec record, stage, weights) of the last Assign acknowledged."""
    orchestrator: str | None = None
    window: int = 0
    closing: int | None = None
    """The window a WindowClose is saving; its messages are refused meanwhile."""
    last_report: WeightsReport | None = None
    last_loss: float | None = None
    last_weights_version: str | None = None
    """The weights digest the latest unit of work was computed with (the engine's own digest is
    only read on the compute thread)."""
    batches: OpenBatches = field(default_factory=OpenBatches)
    counters: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Wall seconds spent, by part (retention, save, send: sends awaiting their ack)."""
    job_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """The compute thread's seconds in forward and backward jobs, by part (compute, serialise,
    digests)."""

    @property
    def stage(self) -> int | None:
        return None if self.holding is None else self.holding.stage

    def install(self, holding: StageHolding | None, window: int) -> None:
        """A new stage (or standby): everything about the previous one is dropped."""
        self.holding = holding
        self.window = window
        self.closing = None
        self.last_report = None
        self.batches.clear()
