"""The receipt ledger: validation codes, replays, digest-chain disputes, queries and counts."""

from __future__ import annotations

from typing import Any

import pytest

from node.orchestration import Direction, LedgerRefusal, Orchestrator, RouteState
from node.run_control.history import RunHistory
from p2p.messages import Receipt
from p2p.refusals import Reason
from store import Store, WriteTxn
from tests.orchestration.kit import T0, FakeClock, digest, make_config, receipt, run_route

FWD, BWD = "forward", "backward"


@pytest.fixture
def orch(store: Store) -> Orchestrator:
    """Three stages served by a, b, c; batches 0 and 1 of window 0 routed over them."""
    o = Orchestrator(store, make_config(n_stages=3, batches=2, in_flight=2), FakeClock())
    for peer, cap in [("a", 3.0), ("b", 2.0), ("c", 1.0)]:
        o.register_miner(peer, "hk", cap)
    routes = o.tick(now=T0)
    assert [r.miners for r in routes] == [("a", "b", "c"), ("a", "b", "c")]
    return o


def honest_chain(batch: int) -> list[tuple[str, dict[str, Any]]]:
    """Receipts of one batch whose digests chain: fwd 0->1->2->3, bwd 10->11->12->13."""
    return [
        ("a", receipt(0, batch, 0, FWD, 0, 1)),
        ("b", receipt(0, batch, 1, FWD, 1, 2)),
        ("c", receipt(0, batch, 2, FWD, 2, 3)),
        ("c", receipt(0, batch, 2, BWD, 10, 11)),
        ("b", receipt(0, batch, 1, BWD, 11, 12)),
        ("a", receipt(0, batch, 0, BWD, 12, 13)),
    ]


def test_honest_receipts_are_stored_counted_and_drive_the_route(orch: Orchestrator) -> None:
    for signer, fields in honest_chain(0):
        assert orch.ingest_receipt(signer, fields, now=T0 + 1) is None
    route = orch.route("0.0.1")
    assert route is not None and route.state is RouteState.DONE
    assert orch.disputes(0) == []
    assert orch.work_counts(0) == {p: {"forward": 1, "backward": 1} for p in "abc"}
    mine = orch.receipts_for(0, "b")
    assert [(r.batch, r.stage, r.direction) for r in mine] == [(0, 1, BWD), (0, 1, FWD)]
    assert mine[1].input_digest == digest(1) and mine[1].received_at == T0 + 1
    assert len(orch.receipts_for_batch(0, 0)) == 6 and orch.receipts_for_batch(0, 1) == []
    status = orch.status()
    assert (status["receipts"], status["disputes"], status["batches"]["completed"]) == (6, 0, 1)


@pytest.mark.parametrize(
    "change",
    [
        {"direction": "sideways"},
        {"input_digest": b"\x00" * 31},
        {"output_digest": "00" * 32},
        {"window": True},
        {"batch": -1},
        {"stage": 3},
        {"weights_version": 7},
        {"stage": None},
    ],
)
def test_malformed_fields_are_refused(orch: Orchestrator, change: dict[str, Any]) -> None:
    fields = receipt(0, 0, 0, FWD, 0, 1) | change
    assert orch.ingest_receipt("a", fields) is Reason.MALFORMED
    del fields["direction"]
    assert orch.ingest_receipt("a", fields) == "malformed"


def test_refusal_codes(orch: Orchestrator) -> None:
    ok = receipt(0, 0, 0, FWD, 0, 1)
    assert orch.ingest_receipt("stranger", ok) is Reason.UNKNOWN_SENDER
    assert orch.ingest_receipt("a", receipt(1, 0, 0, FWD, 0, 1)) is LedgerRefusal.STALE_WINDOW
    assert orch.ingest_receipt("a", receipt(0, 1, 0, FWD, 0, 1)) is None
    orch.tick(now=T0)
    assert orch.ingest_receipt("b", receipt(0, 0, 0, FWD, 0, 1)) is LedgerRefusal.WRONG_STAGE
    assert orch.ingest_receipt("a", ok) is None
    assert orch.ingest_receipt("a", ok) is Reason.REPLAY
    assert orch.ingest_receipt("a", receipt(0, 0, 0, FWD, 5, 6)) == "replay"
    assert orch.status()["receipts"] == 2


def test_unknown_batch_and_window_range(store: Store) -> None:
    orch = Orchestrator(store, make_config(n_stages=1, batches=1), FakeClock())
    orch.register_miner("a", "hk", 1.0)
    assert orch.ingest_receipt("a", receipt(0, 0, 0, FWD, 0, 1)) is LedgerRefusal.UNKNOWN_BATCH
    [route] = orch.tick(now=T0)
    run_route(orch, route.route_id, 1, T0, 1.0)  # hops acknowledged before any receipt came
    orch.finish_merge(now=T0 + 10)
    late = Receipt(
        window=0,
        batch=0,
        stage=0,
        direction=FWD,
        input_digest=digest(0),
        output_digest=digest(1),
        weights_version="v0",
    )
    assert orch.ingest_receipt("a", late) is None  # the previous window still takes receipts
    assert orch.ingest_receipt("a", receipt(1, 0, 0, FWD, 0, 1)) is LedgerRefusal.UNKNOWN_BATCH
    [route] = orch.tick(now=T0 + 11)
    run_route(orch, route.route_id, 1, T0 + 11, 1.0)
    orch.finish_merge(now=T0 + 20)
    assert orch.run_state().window == 2
    for window in (0, 3):
        fields = receipt(window, 0, 0, BWD, 7, 8)
        assert orch.ingest_receipt("a", fields) is LedgerRefusal.STALE_WINDOW
    assert orch.work_counts(0) == {"a": {"forward": 1, "backward": 0}}
    assert orch.work_counts(1) == {}


def test_forward_chain_break_is_a_dispute_whatever_the_arrival_order(orch: Orchestrator) -> None:
    assert orch.ingest_receipt("b", receipt(0, 1, 1, FWD, 99, 2)) is None
    assert orch.disputes(0) == []
    assert orch.ingest_receipt("a", receipt(0, 1, 0, FWD, 0, 1)) is None
    [dispute] = orch.disputes(0)
    assert (dispute.batch, dispute.direction, dispute.route_id) == (1, Direction.FORWARD, "0.1.1")
    assert (dispute.upstream_stage, dispute.upstream_miner) == (0, "a")
    assert (dispute.downstream_stage, dispute.downstream_miner) == (1, "b")
    assert (dispute.upstream_output, dispute.downstream_input) == (digest(1), digest(99))
    assert orch.ingest_receipt("c", receipt(0, 1, 2, FWD, 2, 3)) is None  # b -> c chains
    assert len(orch.disputes(0)) == 1 and orch.status()["disputes"] == 1


def test_backward_chain_break_is_a_dispute(orch: Orchestrator) -> None:
    for signer, fields in honest_chain(0)[:4]:
        assert orch.ingest_receipt(signer, fields) is None
    assert orch.ingest_receipt("b", receipt(0, 0, 1, BWD, 11, 50)) is None
    assert orch.ingest_receipt("a", receipt(0, 0, 0, BWD, 51, 13)) is None
    [dispute] = orch.disputes(0)
    assert dispute.direction is Direction.BACKWARD
    assert (dispute.upstream_stage, dispute.upstream_miner) == (1, "b")
    assert (dispute.downstream_stage, dispute.downstream_miner) == (0, "a")
    assert (dispute.upstream_output, dispute.downstream_input) == (digest(50), digest(51))


def test_a_batch_re_routed_through_the_same_miner_keeps_a_receipt_per_route(
    store: Store,
) -> None:
    """Route 1 of batch 0 lapses and the batch goes round the same single miner again: the
    miner's receipts of both routes are kept (the audit replays both), each once."""
    orch = Orchestrator(store, make_config(n_stages=1, batches=1, max_attempts=3), FakeClock())
    orch.register_miner("x", "hk", 1.0, now=T0)
    first = orch.issue_route(0, 0, now=T0)
    assert first is not None
    on_first = receipt(0, 0, 0, FWD, 0, 1) | {"route": first.route_id}
    assert orch.ingest_receipt("x", on_first, now=T0 + 1) is None
    assert orch.expire(now=T0 + 30) == []  # lapsed: the only miner is suspect, the batch waits
    orch.heartbeat("x", now=T0 + 31)
    [second] = orch.tick(now=T0 + 31)
    assert second.miners == ("x",) and second.route_id != first.route_id
    on_second = receipt(0, 0, 0, FWD, 0, 1) | {"route": second.route_id}
    assert orch.ingest_receipt("x", on_second, now=T0 + 32) is None
    assert orch.ingest_receipt("x", on_second, now=T0 + 33) is Reason.REPLAY
    unknown = receipt(0, 0, 0, FWD, 0, 1) | {"route": "0.0.9"}
    assert orch.ingest_receipt("x", unknown, now=T0 + 33) is LedgerRefusal.WRONG_STAGE
    mine = orch.receipts_for(0, "x")
    assert sorted(r.route for r in mine) == [first.route_id, second.route_id]


def test_a_batch_of_receipts_is_ingested_in_one_commit_as_one_by_one(
    store: Store, orch: Orchestrator
) -> None:
    """Refusals and effects as ingesting them in order; one write transaction for the batch."""
    a_receipts = [fields for signer, fields in honest_chain(0) if signer == "a"]
    batch = [
        (a_receipts[0], 1, b""),
        (a_receipts[0], 2, b""),  # the same receipt again
        (receipt(7, 0, 0, FWD, 0, 1), 3, b""),  # a window not open
        (receipt(0, 0, 1, FWD, 1, 2), 4, b""),  # b's stage, signed by a
        (a_receipts[1], 5, b""),
    ]
    commits = []
    real_write = store.write

    def counting_write() -> Any:
        commits.append(1)
        return real_write()

    history = RunHistory(store, "run")
    seen: list[list[Any]] = []

    def then(txn: WriteTxn, refusals: list[Any]) -> None:  # in the batch's own transaction
        seen.append(refusals)
        history.put_losses(txn, 0, {0: 5.5})

    store.write = counting_write  # type: ignore[method-assign]
    got = orch.ingest_receipts("a", batch, now=T0 + 1, then=then)
    store.write = real_write  # type: ignore[method-assign]
    assert len(commits) == 1 and seen == [got]
    assert (history.window(0) or {}).get("losses") == {"0": 5.5}
    assert got[0] is None and got[4] is None
    assert got[1:4] == [Reason.REPLAY, LedgerRefusal.STALE_WINDOW, LedgerRefusal.WRONG_STAGE]
    assert {(r.stage, r.direction) for r in orch.receipts_for(0, "a")} == {(0, FWD), (0, BWD)}
    assert orch.work_counts(0)["a"] == {"forward": 1, "backward": 1}
