"""The run's window clock: train a window's batches, merge, move to the next window.

The run record lives in the `runs` table under the run id. A window is in phase `train` until
each of its batches has completed or been dropped, then in phase `merge` until `finish_merge`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from node.orchestration.keys import RUNS, Keys
from store import ReadTxn, WriteTxn


class Phase(StrEnum):
    TRAIN = "train"
    MERGE = "merge"


class WindowError(RuntimeError):
    """An operation that the run's current phase or window does not allow."""


@dataclass(kw_only=True, slots=True)
class WindowConfig:
    """Size of a window and how many of its batches may be in flight at once."""

    batches_per_window: int = 16
    max_in_flight: int = 4
    lockstep: bool = False
    """Start batches in groups of `max_in_flight`, each group once the previous one finished."""
    group_size: int = 1
    """Batches per optimizer step: each group of this many consecutive batches goes through the
    same miners, and with several miners per stage one group per miner runs side by side
    (`max_in_flight` then counts per group)."""

    def __post_init__(self) -> None:
        if self.batches_per_window < 1:
            raise ValueError(f"batches_per_window must be >= 1, got {self.batches_per_window}")
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunState:
    run_id: str
    n_stages: int
    window: int = 0
    phase: Phase = Phase.TRAIN
    batches_total: int = 0
    issued: int = 0
    completed: int = 0
    dropped: int = 0
    window_started_at: float = 0.0
    merge_started_at: float | None = None

    @property
    def finished(self) -> int:
        return self.completed + self.dropped

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["phase"] = self.phase.value
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], *, run_id: str, n_stages: int) -> RunState:
        merge_at = record.get("merge_started_at")
        return cls(
            run_id=run_id,
            n_stages=int(record.get("n_stages", n_stages)),
            window=int(record.get("window", 0)),
            phase=Phase(record.get("phase", Phase.TRAIN.value)),
            batches_total=int(record.get("batches_total", 0)),
            issued=int(record.get("issued", 0)),
            completed=int(record.get("completed", 0)),
            dropped=int(record.get("dropped", 0)),
            window_started_at=float(record.get("window_started_at", 0.0)),
            merge_started_at=None if merge_at is None else float(merge_at),
        )


class WindowClock:
    """Reads and advances the run record inside the caller's transaction."""

    def __init__(self, keys: Keys, config: WindowConfig, n_stages: int) -> None:
        self._keys = keys
        self.config = config
        self._n_stages = n_stages

    def ensure(self, txn: WriteTxn, now: float) -> RunState:
        """The run's state, created (or completed from an older, partial record) if needed."""
        record = txn.get(RUNS, self._keys.run)
        state = self._load(record)
        if state.n_stages != self._n_stages:
            raise WindowError(
                f"run {self._keys.run} was created with {state.n_stages} stages, "
                f"configured {self._n_stages}"
            )
        if record is None or "batches_total" not in record:
            state = replace(
                state, batches_total=self.config.batches_per_window, window_started_at=now
            )
            self._put(txn, state)
        return state

    def state(self, txn: ReadTxn) -> RunState:
        return self._load(txn.get(RUNS, self._keys.run))

    def batch_started(self, txn: WriteTxn) -> RunState:
        state = self.state(txn)
        state = replace(state, issued=state.issued + 1)
        self._put(txn, state)
        return state

    def batch_finished(self, txn: WriteTxn, now: float, *, dropped: bool) -> RunState:
        """Counts a batch as completed or dropped; the last one puts the window in merge."""
        state = self.state(txn)
        if dropped:
            state = replace(state, dropped=state.dropped + 1)
        else:
            state = replace(state, completed=state.completed + 1)
        if state.finished >= state.batches_total and state.phase is Phase.TRAIN:
            state = replace(state, phase=Phase.MERGE, merge_started_at=now)
        self._put(txn, state)
        return state

    def finish_merge(self, txn: WriteTxn, now: float) -> RunState:
        """Closes the merge and opens the next window."""
        state = self.state(txn)
        if state.phase is not Phase.MERGE:
            raise WindowError(f"window {state.window} is in phase {state.phase}, not merge")
        state = RunState(
            run_id=state.run_id,
            n_stages=state.n_stages,
            window=state.window + 1,
            batches_total=self.config.batches_per_window,
            window_started_at=now,
        )
        self._put(txn, state)
        return state

    def _load(self, record: dict[str, Any] | None) -> RunState:
        return RunState.from_record(record or {}, run_id=self._keys.run, n_stages=self._n_stages)

    def _put(self, txn: WriteTxn, state: RunState) -> None:
        txn.put(RUNS, self._keys.run, state.to_record())
