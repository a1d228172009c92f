"""The IOTA score book: S per window, forfeit on a failed audit, decay, incentives, weights."""

import pytest

from verification.scores import (
    Decay,
    Standing,
    WindowWork,
    book,
    incentives,
    normalize,
    scores,
    standings,
    weight_vector,
    window_score,
)
from verification.verdict import Outcome, Reason, Verdict


def verdict(miner: str, window: int, outcome: Outcome) -> Verdict:
    reason = {Outcome.PASS: Reason.OK, Outcome.FAIL: Reason.OUTPUT_MISMATCH}.get(
        outcome, Reason.MISSING_EVIDENCE
    )
    return Verdict(outcome, reason, "v", miner, window, 0)


def test_window_score_rule() -> None:
    assert window_score(WindowWork("m", 0, 8)) == 8  # not audited: counts
    assert window_score(WindowWork("m", 0, 8, (Outcome.PASS,))) == 8
    assert window_score(WindowWork("m", 0, 8, (Outcome.INCONCLUSIVE,))) == 8  # never a penalty
    assert window_score(WindowWork("m", 0, 8, (Outcome.FAIL,))) == 0  # the whole window
    assert window_score(WindowWork("m", 0, 8, (Outcome.PASS, Outcome.FAIL))) == 0
    with pytest.raises(ValueError):
        window_score(WindowWork("m", 0, -1))


def test_book_from_counts_and_verdicts() -> None:
    counts = {("a", 0): 4, ("a", 1): 4, ("b", 1): 2}
    verdicts = [verdict("a", 1, Outcome.FAIL), verdict("b", 1, Outcome.INCONCLUSIVE),
                verdict("c", 1, Outcome.PASS)]  # fmt: skip
    records = book(counts, verdicts)
    assert [(r.miner, r.window, r.backward, r.audits) for r in records] == [
        ("a", 0, 4, ()), ("a", 1, 4, (Outcome.FAIL,)), ("b", 1, 2, (Outcome.INCONCLUSIVE,)),
        ("c", 1, 0, (Outcome.PASS,)),
    ]  # fmt: skip
    assert scores(records) == {("a", 0): 4, ("a", 1): 0, ("b", 1): 2, ("c", 1): 0}


def test_records_of_one_window_merge() -> None:
    merged = scores([WindowWork("a", 0, 3), WindowWork("a", 0, 2, (Outcome.FAIL,))])
    assert merged == {("a", 0): 0}
    assert scores([WindowWork("a", 0, 3), WindowWork("a", 0, 2)]) == {("a", 0): 5}


def test_step_decay_cuts_off_after_t_decay() -> None:
    decay = Decay(t_decay=2)
    assert [decay.weight(age) for age in range(5)] == [1.0, 1.0, 1.0, 0.0, 0.0]
    records = [WindowWork("a", w, 10) for w in range(6)]
    assert incentives(records, 5, decay) == {"a": 30.0}  # windows 3, 4, 5
    assert incentives(records, 8, decay) == {"a": 0.0}  # everything decayed
    with pytest.raises(ValueError, match="future"):
        incentives(records, 4, decay)


def test_geometric_decay() -> None:
    decay = Decay(t_decay=3, gamma=0.5)
    assert [decay.weight(a) for a in range(5)] == [1.0, 0.5, 0.25, 0.125, 0.0]
    records = [WindowWork("a", 9, 8), WindowWork("a", 10, 8)]
    assert incentives(records, 10, decay) == {"a": 12.0}
    with pytest.raises(ValueError):
        Decay(t_decay=1, gamma=1.5)
    with pytest.raises(ValueError):
        Decay(t_decay=-1)


def test_a_failed_audit_forfeits_the_whole_horizon_and_bars_the_windows_after() -> None:
    counts = {("a", w): 10 for w in range(8)} | {("b", w): 10 for w in range(8)}
    decay = Decay(t_decay=10)
    assert incentives(book(counts), 7, decay) == {"a": 80.0, "b": 80.0}
    fail = [verdict("a", 2, Outcome.FAIL)]
    # Windows 0..2 forfeited (not only the audited window 2), 3..5 barred, 6 and 7 paid.
    book_ = standings(book(counts, fail), 7, decay, penalty_windows=3)
    assert book_["a"] == Standing(incentive=20.0, escrow=0.0, barred_through=5)
    assert book_["b"] == Standing(incentive=80.0, escrow=0.0, barred_through=None)
    assert incentives(book(counts, fail), 7, decay) == {"a": 50.0, "b": 80.0}  # no penalty
    # A fail that arrives late still forfeits every window before it.
    late = [*fail, verdict("a", 7, Outcome.FAIL), verdict("a", 6, Outcome.PASS)]
    assert incentives(book(counts, late), 7, decay, penalty_windows=3) == {"a": 0.0, "b": 80.0}
    with pytest.raises(ValueError):
        standings([], 0, decay, penalty_windows=-1)


def test_an_inconclusive_window_waits_in_escrow_for_a_later_pass() -> None:
    counts = {("a", w): 10 for w in range(4)}
    decay = Decay(t_decay=10)
    held = [verdict("a", 1, Outcome.INCONCLUSIVE)]
    assert standings(book(counts, held), 3, decay)["a"] == Standing(30.0, 10.0, None)
    earlier_pass = [*held, verdict("a", 0, Outcome.PASS)]  # a pass before it releases nothing
    assert standings(book(counts, earlier_pass), 3, decay)["a"].escrow == 10.0
    paid = [*held, verdict("a", 2, Outcome.PASS)]
    assert standings(book(counts, paid), 3, decay)["a"] == Standing(40.0, 0.0, None)
    same_window = [*held, verdict("a", 1, Outcome.PASS)]  # another validator's pass of it
    assert standings(book(counts, same_window), 3, decay)["a"].incentive == 40.0
    forfeited = [*held, verdict("a", 3, Outcome.FAIL)]
    assert standings(book(counts, forfeited), 3, decay)["a"] == Standing(0.0, 0.0, 3)
    decayed = standings(book(counts, held), 12, decay)["a"]  # window 1 is past the horizon
    assert decayed.escrow == 0.0 and decayed.incentive == 20.0


def test_normalisation_and_ties() -> None:
    weights = normalize({"a": 30.0, "b": 10.0, "c": 0.0})
    assert weights == {"a": 0.75, "b": 0.25, "c": 0.0}
    tie = normalize({"x": 5.0, "y": 5.0, "z": 5.0})
    assert tie["x"] == tie["y"] == tie["z"] == pytest.approx(1 / 3)
    assert sum(tie.values()) == pytest.approx(1.0)
    assert normalize({"a": 0.0, "b": 0.0}) == {"a": 0.0, "b": 0.0}
    assert normalize({}) == {}
    with pytest.raises(ValueError):
        normalize({"a": -1.0})
    with pytest.raises(ValueError):
        normalize({"a": float("nan")})


def test_weight_vector_in_uid_order() -> None:
    values = {"a": 3.0, "b": 1.0, "ghost": 4.0}
    assert weight_vector(values, ["b", "a", "new"]) == [0.25, 0.75, 0.0]
    assert weight_vector({}, ["a", "b"]) == [0.0, 0.0]
