"""A validator's audit records are forgotten beyond what pay, draws and the quality book need,
and forgetting them changes no standing, no audit probability and no quality score."""

from __future__ import annotations

from pathlib import Path

from node.auditing.pay_book import PayBook
from node.auditing.records import AUDITS, AuditRecords
from node.auditing.retention import AuditRetention
from store import Store, StoreConfig
from verification.sampling import SamplingRule
from verification.scores import Decay
from verification.verdict import Outcome, Reason, Verdict

MINERS = ("m0", "m1", "m2")
FAILS = {("m1", 100), ("m2", 281)}
"""m1 failed long ago (its penalty is over by window 300), m2 recently (it is still barred)."""


def pays(pay: PayBook, current: int) -> dict[str, tuple[float, float]]:
    return {m: (s.incentive, s.escrow) for m, s in pay.standings(current).items()}


def fill(records: AuditRecords, windows: int) -> None:
    for w in range(windows):
        records.commit(w, opened=False)
        records.reveal(w)
        records.set_chances(w, {m: 0.5 for m in MINERS})
        records.set_work(w, {m: 10 + (w % 3) for m in MINERS})
        records.set_screen(w, {m: {"loss": 1.0} for m in MINERS}, {"stage_of": {}})
        miner = MINERS[w % 3]
        fail = (miner, w) in FAILS
        outcome = Outcome.FAIL if fail else Outcome.INCONCLUSIVE if w % 7 == 0 else Outcome.PASS
        reason = Reason.OUTPUT_MISMATCH if fail else Reason.OK
        verdict = Verdict(outcome, reason, "v", miner, w, 0)
        records.add_verdict(verdict, b"signed head")
        records.set_foreign_checked(w, miner, "other", "pass")
    records.set_next_window(windows)


def book(records: AuditRecords, penalty: int) -> PayBook:
    rule = SamplingRule()
    return PayBook(records, Decay(t_decay=10), penalty_windows=penalty, rule=rule,
                   miners_per_window=1)  # fmt: skip


def test_pruning_keeps_every_standing_and_draw_and_bounds_the_records(tmp_path: Path) -> None:
    with Store.open(tmp_path, StoreConfig()) as store:
        records = AuditRecords(store, "run", "v")
        fill(records, 300)
        records.set_quality_book(299, {})
        pay = book(records, penalty=150)
        before = (pays(pay, 300), pay.chances(300, list(MINERS)), pay.status(300)["incentives"])
        with store.read() as txn:
            rows_before = txn.count(AUDITS)

        retention = AuditRetention(records, t_decay=10, penalty_windows=150, keep_windows=48)
        gone = retention.prune(300)

        assert gone > 0 and retention.pruned == gone
        assert (pays(pay, 300), pay.chances(300, list(MINERS))) == before[:2]
        assert pay.status(300)["incentives"] == before[2]
        assert pay.standings(300)["m2"].barred_through == 281 + 150
        kept = {v.window for v in records.verdicts()}
        assert min(kept) == 300 - 49  # the newest 49 windows (t_decay 10, keep_windows 48)
        assert 281 in kept and 100 not in kept  # fails stay 161 windows (t_decay + penalty)
        assert records.secret(250) is None and records.secret(251) is not None
        assert records.foreign_checked(250, MINERS[250 % 3], "other") is None
        assert min(records.screens()) == 251
        assert records.next_window() == 300 and records.quality_book() is not None
        with store.read() as txn:
            assert txn.count(AUDITS) < rows_before / 5
        assert retention.prune(300) == 0  # nothing more until the audits move on


def test_old_fails_go_once_their_penalty_is_over(tmp_path: Path) -> None:
    with Store.open(tmp_path, StoreConfig()) as store:
        records = AuditRecords(store, "run", "v")
        fill(records, 300)
        pay = book(records, penalty=20)
        standings = pays(pay, 300)
        AuditRetention(records, t_decay=10, penalty_windows=20, keep_windows=0).prune(300)
        kept = {(v.miner, v.window) for v in records.verdicts()}
        assert ("m2", 281) in kept  # a fail 19 windows ago: kept although older than 300 - 11
        assert min(w for _, w in kept if (_, w) != ("m2", 281)) == 300 - 11
        assert pays(pay, 300) == standings
        assert pay.standings(300)["m2"].barred_through == 301


def test_a_lagging_audit_and_an_unfolded_quality_book_keep_their_windows(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path, StoreConfig()) as store:
        records = AuditRecords(store, "run", "v")
        fill(records, 300)
        records.set_next_window(200)  # the audits are 100 windows behind
        retention = AuditRetention(records, t_decay=10, penalty_windows=150, keep_windows=0)
        assert retention.horizon(300) is not None
        assert retention.horizon(300).before == 200 - 11  # type: ignore[union-attr]
        records.set_quality_book(150, {})  # screens from 151 are still to be folded
        retention.prune(300)
        assert min(records.screens()) == 151
        assert records.secret(150) is None and records.secret(151) is not None


def test_nothing_goes_before_the_first_audit(tmp_path: Path) -> None:
    with Store.open(tmp_path, StoreConfig()) as store:
        records = AuditRecords(store, "run", "v")
        retention = AuditRetention(records, t_decay=10, penalty_windows=150, keep_windows=48)
        assert retention.prune(None) == 0 and retention.prune(500) == 0
        records.commit(3, opened=True)
        records.set_next_window(3)
        assert retention.prune(500) == 0 and records.secret(3) is not None


def test_a_store_that_refuses_the_prune_keeps_the_records_and_the_node(tmp_path: Path) -> None:
    with Store.open(tmp_path, StoreConfig()) as store:
        records = AuditRecords(store, "run", "v")
        fill(records, 120)
        retention = AuditRetention(records, t_decay=10, penalty_windows=150, keep_windows=0)
        store.close()  # every read and write now raises StoreError
        assert retention.prune(120) == 0 and retention.failed == 1
