"""Other validators' fails, counted only once this validator's own replay agrees.

A fail costs a miner everything in its decay horizon and the penalty windows after it, so one
validator must not be able to get an honest miner punished by lying. Each tick the validator
asks the orchestrator for the fails reported for recent windows (`VerdictQuery`), checks each
head's signature against the validator it names, and replays every (window, miner) it has not
judged itself (`Auditor.audit_miner`, the same audit as a drawn one). Its own verdict is what its
pay book counts: a fail it reproduces counts (`foreign_fail_confirmed`), a fail its replay
passes is refuted (`foreign_fail_refuted`, logged with the accusing validator) and changes
nothing, and an inconclusive check holds the window in escrow like any inconclusive audit.
"""

from __future__ import annotations

import logging

from node.auditing.auditor import Auditor
from p2p.audit_messages import AuditVerdict, VerdictList, VerdictQuery
from p2p.errors import P2PError
from p2p.refusals import Refused
from p2p.statements import open_statement
from verification.verdict import Outcome, Verdict

log = logging.getLogger(__name__)


class ForeignFails:
    def __init__(self, auditor: Auditor, *, horizon: int) -> None:
        """`horizon`: how many windows back a fail still matters (the decay horizon)."""
        self.auditor = auditor
        self.horizon = horizon

    async def check(self, orch: str) -> None:
        """Replay the fails other validators reported for windows this one has closed."""
        a = self.auditor
        audited_to = a.records.next_window()
        if audited_to is None or a.current_window is None:
            return
        since, after = max(0, a.current_window - self.horizon), ""
        while True:
            reply = await a.endpoint.request(
                orch, VerdictQuery(since=since, after=after), timeout=a.settings.timeout_s
            )
            if not isinstance(reply, VerdictList):
                raise P2PError(f"{orch} answered VerdictQuery with {reply!r}")
            for head in reply.verdicts:
                await self._one(orch, head, audited_to)
            if not reply.more:
                return
            after = reply.cursor

    async def _one(self, orch: str, head: bytes, audited_to: int) -> None:
        a = self.auditor
        try:
            statement, header = open_statement(head, AuditVerdict, run=a.endpoint.run)
            verdict = Verdict.decode(statement.verdict)
        except (Refused, ValueError) as exc:
            a.counters["foreign_malformed"] += 1
            log.info("a reported verdict does not open: %s", exc)
            return
        if header.sender != verdict.validator:
            a.counters["foreign_malformed"] += 1
            return
        me = a.endpoint.peer_id
        if verdict.validator == me or verdict.outcome is not Outcome.FAIL:
            return
        if verdict.window >= audited_to:  # not closed for this validator yet: next time
            return
        if a.records.statement(verdict.window, verdict.miner) is not None:
            return  # judged it already (drawn, or another validator's fail of it)
        if a.records.foreign_checked(verdict.window, verdict.miner, verdict.validator):
            return
        info = await a.window_info(orch, verdict.window)
        if not info.closed:
            return
        ours = await a.audit_miner(orch, info, verdict.miner)
        outcome = ours.outcome.value if ours is not None else "no_receipts"
        a.records.set_foreign_checked(verdict.window, verdict.miner, verdict.validator, outcome)
        if ours is not None and ours.outcome is Outcome.FAIL:
            a.counters["foreign_fail_confirmed"] += 1
        elif ours is not None and ours.outcome is Outcome.PASS:
            a.counters["foreign_fail_refuted"] += 1
            log.warning(
                "validator %s failed %s in window %s; this replay passes it: not counted",
                verdict.validator, verdict.miner, verdict.window,
            )  # fmt: skip
        else:
            a.counters["foreign_fail_unchecked"] += 1
