"""Checks on pipeline messages before any compute: tickets, neighbours, batch indices (tensors:
`training.wire.WireFormat.check`).

A route's *ticket* is the orchestrator's signed head of its `Work` (made with an empty ticket
field). Every hop carries it, so each miner can check, without asking anyone, that the
orchestrator issued this route for this batch, that it names this miner for its stage, and that
the sender is the neighbour the route names. All checks raise `Refused` with the code to answer.
"""

from __future__ import annotations

from p2p.messages import Work
from p2p.refusals import Reason, Refused
from p2p.statements import open_statement


def verify_ticket(
    ticket: bytes,
    *,
    run: str,
    orchestrator: str,
    window: int,
    batch: int,
    route: str,
    n_stages: int,
) -> Work:
    """The route the orchestrator signed, if `ticket` is its signed Work for this batch."""
    try:
        work, _ = open_statement(ticket, Work, run=run, signer=orchestrator)
    except Refused as exc:
        raise Refused(Reason.BAD_TICKET, f"ticket: {exc}") from None
    if work.ticket:
        raise Refused(Reason.BAD_TICKET, "a ticket must sign a Work without a ticket")
    if (work.window, work.batch, work.route) != (window, batch, route):
        raise Refused(
            Reason.BAD_TICKET,
            f"ticket is for window {work.window} batch {work.batch} route {work.route!r}, "
            f"not window {window} batch {batch} route {route!r}",
        )
    if len(work.miners) != n_stages:
        raise Refused(Reason.BAD_TICKET, f"ticket names {len(work.miners)} miners, not {n_stages}")
    return work


def check_route(work: Work, *, stage: int, me: str, sender: str, upstream: bool) -> None:
    """`work` names this miner at `stage`, and `sender` is its neighbour on the route.

    `upstream`: the sender is stage - 1 (an activation); otherwise stage + 1 (a gradient).
    """
    if work.miners[stage] != me:
        raise Refused(Reason.BAD_TICKET, f"the route names {work.miners[stage]} for stage {stage}")
    neighbour = stage - 1 if upstream else stage + 1
    if not 0 <= neighbour < len(work.miners) or work.miners[neighbour] != sender:
        raise Refused(
            Reason.BAD_TICKET, f"sender {sender} is not the route's miner of stage {neighbour}"
        )


def check_batch_index(batch: int, batches_per_window: int) -> None:
    if not 0 <= batch < batches_per_window:
        raise Refused(
            Reason.UNKNOWN_BATCH, f"batch {batch} outside the window's {batches_per_window}"
        )
