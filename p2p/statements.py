"""Signed statements: a body-less message's signed head, kept or forwarded as evidence.

A route's ticket (the orchestrator's `Work`) and each receipt inside a `ReceiptBatch` travel as
such heads: whoever holds one can check who signed it and what it says, long after the request
that carried it. Decoding failures raise `Refused` with the reason code to answer with.
"""

from __future__ import annotations

from typing import TypeVar

from p2p.envelope import Header, MalformedMessage, open_frame
from p2p.messages import Message
from p2p.refusals import Reason, Refused
from p2p.transport import Frame

M = TypeVar("M", bound=Message)


def open_statement(
    head: bytes, cls: type[M], *, run: str, signer: str | None = None
) -> tuple[M, Header]:
    """Verify and decode a signed head of `cls`; `signer`, when given, must have signed it."""
    try:
        header, body = open_frame(Frame(head, b""), sender=signer)
    except MalformedMessage as exc:
        raise Refused(Reason.MALFORMED, f"statement: {exc}") from None
    if header.type_id != cls.type_id or header.version != cls.version:
        raise Refused(Reason.MALFORMED, f"statement is type {header.type_id}, not {cls.__name__}")
    if header.run != run:
        raise Refused(Reason.WRONG_RUN, f"statement of run {header.run!r}")
    try:
        return cls.decode(header, body), header
    except MalformedMessage as exc:
        raise Refused(Reason.MALFORMED, f"statement: {exc}") from None
