"""What validators ask the orchestrator for an audit, and where their verdicts land.

Only admitted peers whose Hello declares the validator role may ask (others are refused
`not_allowed`):
  - `ReceiptQuery(window, miner, offset)` → `ReceiptList`: the miner's receipts of the window as
    the signed heads it sent (each verifiable against the miner's key), in its sequence order,
    `PAGE` at a time;
  - `WindowInfoQuery(window)` → `WindowInfo`: the run's spec, each stage's checkpoint the window
    started from (the previous window's, "" = seed init) and ended at, the window's routes (which
    miner held which stage of each batch, so inputs can be fetched from the neighbours) and each
    miner's accepted backward receipts (its IOTA S before audits);
  - `VerdictReport` of signed `AuditVerdict` heads: verified and kept in the `audits` table
    (under `<run>/reported/`, apart from a validator role's own records on the same node);
  - `VerdictQuery(since)` → `VerdictList`: the fails any validator reported for windows `since`
    on, as their signed heads, for every validator to check by replaying them itself.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from node.orchestration import Orchestrator
from node.run_control.history import RunHistory
from p2p.admission import PeerSession
from p2p.audit_messages import (
    AuditVerdict,
    ReceiptList,
    ReceiptQuery,
    VerdictList,
    VerdictQuery,
    VerdictReport,
    WindowInfo,
    WindowInfoQuery,
)
from p2p.endpoint import Endpoint
from p2p.messages import Ack, Message
from p2p.refusals import Reason, Refused
from p2p.statements import open_statement
from store import Store
from verification.verdict import Verdict

log = logging.getLogger(__name__)
AUDITS = "audits"
PAGE = 64
"""Receipt heads per ReceiptList (they travel in the reply's 64 KiB head)."""
MAX_VERDICTS = 64
VERDICT_PAGE = 32
"""Verdict heads per VerdictList."""


class AuditDesk:
    def __init__(
        self,
        orchestrator: Orchestrator,
        history: RunHistory,
        store: Store,
        run_id: str,
        *,
        batches_per_window: int,
    ) -> None:
        self._orch = orchestrator
        self._history = history
        self._store = store
        self._run = run_id
        self.spec_record: dict[str, Any] = {}
        """The pinned run spec (set once the orchestrator has built the dataset)."""
        self.batches_per_window = batches_per_window
        self.counters: Counter[str] = Counter()
        self.followers: set[str] = set()
        """Validators (peer ids) that asked where the run is since this node started."""

    def register(self, endpoint: Endpoint) -> None:
        endpoint.register(ReceiptQuery, self.on_receipts)
        endpoint.register(WindowInfoQuery, self.on_window)
        endpoint.register(VerdictReport, self.on_verdicts)
        endpoint.register(VerdictQuery, self.on_verdict_query)

    @staticmethod
    def _validator(peer: PeerSession) -> None:
        if "validator" not in peer.roles:
            raise Refused(Reason.NOT_ALLOWED, "only validators query audit evidence")

    async def on_receipts(self, msg: ReceiptQuery, peer: PeerSession) -> Message:
        self._validator(peer)
        if msg.window < 0 or msg.offset < 0:
            raise Refused(Reason.MALFORMED, "window and offset must be >= 0")
        records = sorted(self._orch.receipts_for(msg.window, msg.miner), key=lambda r: r.seq)
        page = records[msg.offset : msg.offset + PAGE]
        self.counters["receipt_queries"] += 1
        return ReceiptList(
            window=msg.window,
            miner=msg.miner,
            receipts=[r.statement for r in page if r.statement],
            more=msg.offset + PAGE < len(records),
        )

    async def on_window(self, msg: WindowInfoQuery, peer: PeerSession) -> Message:
        self._validator(peer)
        self.followers.add(peer.peer_id)
        w = msg.window
        if w < 0:
            raise Refused(Reason.MALFORMED, "window must be >= 0")
        self.counters["window_queries"] += 1
        current = self._orch.run_state().window
        record = self._history.window(w) or {}
        closed = bool(record.get("closed"))
        if not closed:
            return WindowInfo(window=w, current=current, closed=False, spec=self.spec_record)
        previous = (self._history.window(w - 1) or {}) if w > 0 else {}
        start = {str(s): str(d) for s, d in previous.get("weights", {}).items()}
        end = {str(s): str(d) for s, d in record.get("weights", {}).items()}
        routes: dict[str, list[str]] = {}
        batches: dict[str, int] = {}
        for batch in range(self.batches_per_window):
            found = self._orch.batch(w, batch)
            for route_id in found.routes if found is not None else ():
                route = self._orch.route(route_id)
                if route is not None:
                    routes[route_id] = list(route.miners)
                    batches[route_id] = batch
        work = {m: int(c.get("backward", 0)) for m, c in self._orch.work_counts(w).items()}
        starts = {str(p): str(v[1]) for p, v in previous.get("members", {}).items()}
        ends = {str(p): str(d) for p, d in record.get("premerge", {}).items()}
        capacity = {m.peer_id: m.capacity for m in self._orch.miners() if m.peer_id in work}
        return WindowInfo(
            window=w,
            current=current,
            closed=True,
            spec=self.spec_record,
            start=start,
            end=end,
            routes=routes,
            batches=batches,
            work=work,
            starts=starts,
            ends=ends,
            capacity=capacity,
            seconds=float(record.get("seconds") or 0.0),
        )

    async def on_verdicts(self, msg: VerdictReport, peer: PeerSession) -> Message:
        self._validator(peer)
        if len(msg.verdicts) > MAX_VERDICTS:
            raise Refused(Reason.TOO_LARGE, f"{len(msg.verdicts)} verdicts in one report")
        now = time.time()
        for head in msg.verdicts:
            try:
                statement, _ = open_statement(
                    head, AuditVerdict, run=self._run, signer=peer.peer_id
                )
                verdict = Verdict.decode(statement.verdict)
            except (Refused, ValueError) as exc:
                self.counters["verdicts_refused"] += 1
                log.info("verdict from %s refused: %s", peer.peer_id, exc)
                continue
            if verdict.validator != peer.peer_id:
                self.counters["verdicts_refused"] += 1
                continue
            key = f"{self._prefix}{verdict.window:010d}/{verdict.miner}/{peer.peer_id}"
            row = {"statement": head, "received_at": now, "outcome": verdict.outcome.value}
            with self._store.write() as txn:
                txn.put(AUDITS, key, row)
            self.counters[f"verdicts_{verdict.outcome.value}"] += 1
        return Ack()

    async def on_verdict_query(self, msg: VerdictQuery, peer: PeerSession) -> Message:
        self._validator(peer)
        heads: list[bytes] = []
        start = self._prefix + (msg.after + "\x00" if msg.after else f"{max(msg.since, 0):010d}")
        self.counters["verdict_queries"] += 1
        last = ""
        with self._store.read() as txn:
            for key, row in txn.range(AUDITS, start, self._prefix + "~"):
                if row.get("outcome") != "fail":
                    continue
                if len(heads) == VERDICT_PAGE:
                    return VerdictList(verdicts=heads, more=True, cursor=last)
                heads.append(bytes(row["statement"]))
                last = key.decode()[len(self._prefix) :]
        return VerdictList(verdicts=heads)

    @property
    def _prefix(self) -> str:
        return f"{self._run}/reported/"

    def prune(self, before: int) -> int:
        """Forget the verdicts reported for windows `< before` (their receipts and routes are
        gone by then: nothing could replay them); returns how many went."""
        with self._store.write() as txn:
            found = txn.range(AUDITS, self._prefix, f"{self._prefix}{max(before, 0):010d}")
            doomed = [key for key, _ in found]
            for key in doomed:
                txn.delete(AUDITS, key)
        return len(doomed)

    def verdicts(self, window: int) -> list[Verdict]:
        """The verdicts validators reported for `window`."""
        out = []
        with self._store.read() as txn:
            rows = [r for _, r in txn.scan(AUDITS, f"{self._prefix}{window:010d}/")]
        for row in rows:
            statement, _ = open_statement(row["statement"], AuditVerdict, run=self._run)
            out.append(Verdict.decode(statement.verdict))
        return out
