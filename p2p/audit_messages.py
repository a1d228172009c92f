"""Audit messages: what validators ask the orchestrator for (receipts, a window's routes and
checkpoints, the fails other validators reported) and the verdicts they report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2p.messages import Message


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptQuery(Message):
    """Validator → orchestrator: a miner's signed receipts of a window, `offset` on (by seq)."""

    type_id = 50
    protocol = "/tessera/audit/receipts/1"
    rate_per_s = 50.0
    burst = 200
    window: int
    miner: str
    offset: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptList(Message):
    """Reply to ReceiptQuery: the receipts' signed heads in sequence order (one page)."""

    type_id = 51
    re: int = 0
    window: int
    miner: str
    receipts: list[bytes]
    more: bool = False
    """Further receipts follow: ask again with offset += len(receipts)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowInfoQuery(Message):
    """Validator → orchestrator: what an audit of `window` needs besides receipts."""

    type_id = 52
    protocol = "/tessera/audit/window/1"
    rate_per_s = 20.0
    burst = 50
    window: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowInfo(Message):
    """Reply to WindowInfoQuery.

    `start` / `end`: stage → checkpoint blob (sha256 hex, served by the orchestrator) the window
    started from ("" = seed init) and ended at; `routes`: route id → miners by stage; `work`:
    miner → backward receipts accepted in the window; `current`: the orchestrator's open window.
    """

    type_id = 53
    re: int = 0
    window: int
    current: int
    closed: bool
    spec: dict[str, Any] = field(default_factory=dict)
    start: dict[str, str] = field(default_factory=dict)
    end: dict[str, str] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    """Route id → its batch (a batch re-issued after a lease expiry has several routes)."""
    work: dict[str, int] = field(default_factory=dict)
    starts: dict[str, str] = field(default_factory=dict)
    """Miner → the checkpoint it started the window from, where it differs per miner (its own
    post-merge checkpoint of the previous window); others start from `start`."""
    ends: dict[str, str] = field(default_factory=dict)
    """Miner → its own window-end checkpoint (before the stage's merge)."""
    capacity: dict[str, float] = field(default_factory=dict)
    """Miner → the capacity it declared (tokens/s), as the orchestrator routes by it."""
    seconds: float = 0.0
    """The window's wall seconds (0: unknown)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditVerdict(Message):
    """A validator's verdict (`verification.verdict.Verdict.encode()`), kept as a signed head."""

    type_id = 54
    protocol = "/tessera/audit/verdict/1"
    verdict: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class VerdictReport(Message):
    """Validator → orchestrator: signed AuditVerdict heads."""

    type_id = 55
    protocol = "/tessera/audit/verdicts/1"
    rate_per_s = 10.0
    burst = 50
    verdicts: list[bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerdictQuery(Message):
    """Validator → orchestrator: the failed verdicts validators reported for windows `since`
    on (so each validator can check the others' fails by replaying them itself)."""

    type_id = 56
    protocol = "/tessera/audit/verdict-query/1"
    rate_per_s = 10.0
    burst = 50
    since: int
    after: str = ""
    """Continue after this cursor (a VerdictList's `cursor`); "" = from `since`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerdictList(Message):
    """Reply to VerdictQuery: signed AuditVerdict heads of fails, oldest window first (one
    page); `more`: ask again with `after=cursor`."""

    type_id = 57
    re: int = 0
    verdicts: list[bytes]
    more: bool = False
    cursor: str = ""
