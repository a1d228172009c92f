"""Reason codes for refusing a message, the `Refused` exception, and the refusal ledger.

Every refusal is counted by code (exported to /metrics by the node) and logged at most once per
(peer, code) per interval, so a misbehaving peer cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from enum import StrEnum

from p2p.errors import P2PError

log = logging.getLogger(__name__)


class Reason(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    WRONG_RUN = "wrong_run"
    BAD_SIGNATURE = "bad_signature"
    BAD_DIGEST = "bad_digest"
    SENDER_MISMATCH = "sender_mismatch"
    UNKNOWN_SENDER = "unknown_sender"
    BAD_BINDING = "bad_binding"
    NOT_ALLOWED = "not_allowed"
    NOT_REGISTERED = "not_registered"
    REPLAY = "replay"
    STALE = "stale"
    TOO_LARGE = "too_large"
    BAD_SHAPE = "bad_shape"
    BAD_DTYPE = "bad_dtype"
    NON_FINITE = "non_finite"
    RATE_LIMITED = "rate_limited"
    OVER_CAPACITY = "over_capacity"
    NOT_FOUND = "not_found"
    NOT_READY = "not_ready"
    NOT_ASSIGNED = "not_assigned"
    BAD_TICKET = "bad_ticket"
    UNKNOWN_BATCH = "unknown_batch"
    WRONG_WINDOW = "wrong_window"
    STORE_FULL = "store_full"
    INTERNAL = "internal_error"


class Refused(P2PError):
    """A message was refused, locally or by the remote peer, with a reason code."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class RefusalLedger:
    """Counts refusals by code and rate-limits their log lines per (peer, code)."""

    def __init__(self, *, log_interval_s: float = 60.0) -> None:
        self.counts: Counter[str] = Counter()
        self._interval = log_interval_s
        self._last_logged: dict[tuple[str, Reason], float] = {}

    def record(
        self, peer: str | None, reason: Reason, detail: str, now: float | None = None
    ) -> None:
        self.counts[reason.value] += 1
        now = time.monotonic() if now is None else now
        key = (peer or "?", reason)
        if now - self._last_logged.get(key, float("-inf")) >= self._interval:
            self._last_logged[key] = now
            log.warning(
                "refused %s from %s: %s", reason.value, peer or "unauthenticated peer", detail
            )
        if len(self._last_logged) > 10_000:
            self._last_logged.clear()
