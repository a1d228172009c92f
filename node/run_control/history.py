"""The run's history in LMDB: the spec, each window's losses, weights and evaluation, assignments.

Everything the orchestrator role shows about the run (and needs after a restart) beyond the
orchestration core's own state: a restarted orchestrator reads the same spec, the stage
checkpoints of the last closed window, which miner acknowledged which assignment, and the
per-window figures. Window records older than the role's `history_windows` are forgotten, their
batches, seconds and work added to the run's totals (`earlier`), so the history stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

from store import Store, WriteTxn

HISTORY = "history"


@dataclass(frozen=True, slots=True)
class Assignment:
    stage: int
    weights: str


class RunHistory:
    def __init__(self, store: Store, run_id: str) -> None:
        self._store = store
        self._run = run_id

    # spec ------------------------------------------------------------------------------------

    def pin_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Stores the run's spec on first start; later starts must configure the same one."""
        key = f"{self._run}/spec"
        with self._store.write() as txn:
            stored = txn.get(HISTORY, key)
            if stored is None:
                txn.put(HISTORY, key, spec)
                return spec
        if stored != spec:
            changed = sorted(k for k in set(spec) | set(stored) if spec.get(k) != stored.get(k))
            raise ValueError(
                f"run {self._run!r} was started with another spec (differs in {changed}); "
                "use a new node.run_id for a new run"
            )
        return dict(stored)

    # windows ---------------------------------------------------------------------------------

    def add_losses(self, window: int, losses: dict[int, float]) -> None:
        """Records the last stage's training loss of batches (by batch index) of `window`."""
        with self._store.write() as txn:
            self.put_losses(txn, window, losses)

    def put_losses(self, txn: WriteTxn, window: int, losses: dict[int, float]) -> None:
        """`add_losses` within the caller's write transaction (the receipts' own)."""
        record = txn.get(HISTORY, self._window_key(window)) or {"window": window}
        merged = dict(record.get("losses", {}))
        merged.update({str(b): loss for b, loss in losses.items()})
        txn.put(HISTORY, self._window_key(window), {**record, "losses": merged})

    def close_window(self, window: int, **fields: Any) -> None:
        """Adds a closed window's figures (tokens, seconds, weights by stage, work, …)."""
        with self._store.write() as txn:
            record = txn.get(HISTORY, self._window_key(window)) or {"window": window}
            txn.put(HISTORY, self._window_key(window), {**record, **fields, "closed": True})

    def set_eval(self, window: int, results: dict[str, dict[str, float]]) -> None:
        with self._store.write() as txn:
            record = txn.get(HISTORY, self._window_key(window)) or {"window": window}
            txn.put(HISTORY, self._window_key(window), {**record, "eval": results})

    def window(self, window: int) -> dict[str, Any] | None:
        with self._store.read() as txn:
            record: dict[str, Any] | None = txn.get(HISTORY, self._window_key(window))
            return record

    def windows(self) -> list[dict[str, Any]]:
        """Every window with a record, in order."""
        with self._store.read() as txn:
            return [r for _, r in txn.scan(HISTORY, f"{self._run}/w/")]

    def compact(self, before: int, max_windows: int = 64) -> int:
        """Drop what only audits and merges of recent windows read (each miner's pre-merge
        checkpoint and the members it went on from) from the closed windows `< before` (at
        most `max_windows` records a call), keeping how many merged in each stage; returns how
        many windows were compacted. The losses, work, weights and evaluation stay for the
        run; a window that never closed is passed over as it is."""
        done = 0
        with self._store.write() as txn:
            start = int(txn.get(HISTORY, f"{self._run}/compacted") or 0)
            found = txn.range(HISTORY, self._window_key(start), self._window_key(before))
            window = start
            for key, record in list(islice(found, max_windows)):
                if record.get("closed") and ("members" in record or "premerge" in record):
                    kept = {k: v for k, v in record.items() if k not in ("members", "premerge")}
                    txn.put(HISTORY, key, {**kept, "merged": merged_counts(record)})
                    done += 1
                window = int(record["window"]) + 1
            if window != start:
                txn.put(HISTORY, f"{self._run}/compacted", window)
        return done

    def forget(self, before: int, max_windows: int = 64) -> int:
        """Delete the window records `< before` (at most `max_windows` a call), adding the closed
        ones' batches, seconds and work to `earlier()` in the same transaction; returns how
        many went."""
        if before <= 0:
            return 0
        with self._store.write() as txn:
            found = txn.range(HISTORY, self._window_key(0), self._window_key(before))
            gone = list(islice(found, max_windows))
            if not gone:
                return 0
            totals = txn.get(HISTORY, self._earlier_key()) or _no_totals()
            for key, record in gone:
                if record.get("closed"):
                    _fold(totals, record)
                txn.delete(HISTORY, key)
            txn.put(HISTORY, self._earlier_key(), totals)
        return len(gone)

    def earlier(self) -> dict[str, Any]:
        """Totals of the forgotten windows: `windows`, `completed`, `tokens`, `seconds` and
        `work` ({peer: {"forward": n, "backward": n}})."""
        with self._store.read() as txn:
            totals: dict[str, Any] = txn.get(HISTORY, self._earlier_key()) or _no_totals()
        return totals

    def latest_weights(self) -> dict[int, str]:
        """The newest checkpoint digest of each stage over the closed windows."""
        return self.starting_points()[0]

    def latest_members(self) -> dict[str, tuple[int, str]]:
        """Per miner of the newest closed window: (stage, checkpoint it goes on from)."""
        return self.starting_points()[1]

    def starting_points(self) -> tuple[dict[int, str], dict[str, tuple[int, str]]]:
        """`latest_weights()` and `latest_members()` from one scan of the window records."""
        weights: dict[int, str] = {}
        members: dict[str, Any] = {}
        for record in self.windows():
            for stage, digest in record.get("weights", {}).items():
                weights[int(stage)] = digest
            if record.get("closed"):
                members = record.get("members", {})
        return weights, {p: (int(v[0]), str(v[1])) for p, v in members.items()}

    # assignments -----------------------------------------------------------------------------

    def assignment(self, peer_id: str) -> Assignment | None:
        with self._store.read() as txn:
            record = txn.get(HISTORY, self._assign_key(peer_id))
        return None if record is None else Assignment(record["stage"], record["weights"])

    def set_assignment(self, peer_id: str, assignment: Assignment | None) -> None:
        with self._store.write() as txn:
            if assignment is None:
                txn.delete(HISTORY, self._assign_key(peer_id))
            else:
                record = {"stage": assignment.stage, "weights": assignment.weights}
                txn.put(HISTORY, self._assign_key(peer_id), record)

    def _window_key(self, window: int) -> str:
        return f"{self._run}/w/{window:010d}"

    def _assign_key(self, peer_id: str) -> str:
        return f"{self._run}/assigned/{peer_id}"

    def _earlier_key(self) -> str:
        return f"{self._run}/earlier"


def _no_totals() -> dict[str, Any]:
    return {"windows": 0, "completed": 0, "tokens": 0, "seconds": 0.0, "work": {}}


def _fold(totals: dict[str, Any], record: dict[str, Any]) -> None:
    totals["windows"] += 1
    totals["completed"] += int(record.get("completed", 0))
    totals["tokens"] += int(record.get("tokens", 0))
    totals["seconds"] += float(record.get("seconds", 0.0))
    for peer, counts in record.get("work", {}).items():
        slot = totals["work"].setdefault(peer, {})
        for direction, n in counts.items():
            slot[direction] = slot.get(direction, 0) + int(n)


def merged_counts(record: dict[str, Any]) -> dict[str, int]:
    """Stage -> how many members went on from its merge in a window record."""
    if "merged" in record:
        return {str(k): int(v) for k, v in record["merged"].items()}
    members = record.get("members", {}).values()
    return {
        str(stage): sum(1 for s, _ in members if s == int(stage))
        for stage in record.get("versions", {})
    }
