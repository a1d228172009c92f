"""The Templar score book: each formula against hand-computed values, and the penalty table."""

import math

import pytest
from openskill.models import PlackettLuce

from verification.quality import Screen
from verification.templar import (
    TemplarBook,
    TemplarParams,
    power_normalise,
    stage_scaled,
    sync_score,
)

P = TemplarParams()


def screen(miner: str, improvement: float, *, stage: int = 0, behind: float = 0.0) -> Screen:
    return Screen(miner, stage, 5.0, 5.0 - improvement, behind)


def test_defaults_are_the_documents() -> None:
    assert (P.openskill_beta, P.openskill_tau, P.binary_score_ma_alpha) == (20.0, 0.1, 0.05)
    assert (P.gradient_score_ma_alpha, P.final_score_ma_alpha, P.power_normalisation) == (
        0.6, 0.75, 2.0,
    )  # fmt: skip
    assert (P.inactivity_slash_rate, P.missing_gradient_slash_rate, P.sync_slash_rate) == (
        0.25, 0.75, 0.75,
    )  # fmt: skip
    assert P.reset_inactivity_windows == 25
    with pytest.raises(ValueError):
        TemplarParams(binary_score_ma_alpha=1.5)


def test_one_window_by_hand() -> None:
    book = TemplarBook(P)
    book.update({"a": screen("a", 0.2), "b": screen("b", -0.1, behind=1.5)}, worked=["a", "b"])
    # Ratings: one Plackett-Luce game (beta 20, tau 0.1) on stage-scaled improvements.
    model = PlackettLuce(beta=20.0, tau=0.1)
    ra, rb = model.rate([[model.rating()], [model.rating()]], scores=[0.2 / 0.15, -0.1 / 0.15])
    a, b = book.miners["a"], book.miners["b"]
    assert (a.mu, a.sigma, b.mu, b.sigma) == pytest.approx(
        (ra[0].mu, ra[0].sigma, rb[0].mu, rb[0].sigma)
    )
    assert a.ordinal > 0 > b.ordinal
    assert a.gradient_ma == pytest.approx(0.6 * 0.2) and b.gradient_ma == pytest.approx(-0.06)
    assert a.binary_ma == pytest.approx(0.05) and b.binary_ma == pytest.approx(-0.05)
    assert a.sync == 1.0 and b.sync == pytest.approx(0.5)  # 1.5 of 3 steps behind
    assert a.final_ma == pytest.approx(0.25 * a.ordinal * 0.05)
    assert b.final_ma == 0.0  # negative binary average: never below 0
    # Second window: the averages move by their alphas.
    before = a.final_ma
    book.update({"a": screen("a", -0.1), "b": screen("b", 0.3)}, worked=["a", "b"])
    assert a.binary_ma == pytest.approx(0.95 * 0.05 - 0.05)
    assert a.gradient_ma == pytest.approx(0.6 * -0.1 + 0.4 * 0.12)
    assert a.final_ma == pytest.approx(max(0.0, 0.75 * before + 0.25 * a.ordinal * 0.0))
    assert b.binary_ma == pytest.approx(0.95 * -0.05 + 0.05)
    assert (a.screened, a.improved, b.screened, b.improved) == (2, 1, 2, 1)


def test_penalty_table() -> None:
    book = TemplarBook(P)
    for _ in range(3):
        book.update({"a": screen("a", 0.2), "b": screen("b", 0.1)}, worked=["a", "b"])
    value = book.miners["a"].final_ma
    assert value > 0
    book.update({"b": screen("b", 0.1)}, worked=["b"])  # a did not work: inactivity, 25 %
    assert book.miners["a"].final_ma == pytest.approx(0.75 * value)
    assert book.miners["a"].inactive == 1
    value = book.miners["a"].final_ma
    book.update({"b": screen("b", 0.1)}, worked=["a", "b"])  # a worked, nothing screened: 75 %
    assert book.miners["a"].final_ma == pytest.approx(0.25 * value)
    missing = Screen("a", 0, 5.0, 5.0, 0.0, missing=True)
    value = book.miners["a"].final_ma
    book.update({"a": missing, "b": screen("b", 0.1)}, worked=["a", "b"])
    assert book.miners["a"].final_ma == pytest.approx(0.25 * value)
    value = book.miners["b"].final_ma
    book.update({"a": screen("a", 0.2), "b": screen("b", 0.1, behind=4.0)}, worked=["a", "b"])
    assert book.miners["b"].sync == 0.0  # more than 3 steps behind: no sync, and slashed 75 %
    assert book.miners["b"].final_ma == pytest.approx(0.25 * 0.75 * value)
    for i in range(P.reset_inactivity_windows - 1):
        book.update({"b": screen("b", 0.1)}, worked=["b"])
        assert "a" in book.miners, i
    book.update({"b": screen("b", 0.1)}, worked=["b"])
    assert "a" not in book.miners  # reset after 25 inactive windows


def test_power_normalisation_and_ranking() -> None:
    weights = power_normalise({"a": 2.0, "b": 1.0, "c": 0.0, "d": -1.0, "e": math.nan}, P)
    assert weights == pytest.approx({"a": 0.8, "b": 0.2, "c": 0.0, "d": 0.0, "e": 0.0})
    assert power_normalise({"a": 0.0}, P) == {"a": 0.0}
    book = TemplarBook(P)
    for _ in range(2):
        book.update(
            {m: screen(m, v) for m, v in (("h1", 0.3), ("h2", 0.1), ("lazy", 0.0), ("rnd", -0.2))},
            worked=["h1", "h2", "lazy", "rnd"],
        )
    assert book.ranking() == ["h1", "h2", "lazy", "rnd"]
    assert book.weights()["lazy"] == book.weights()["rnd"] == 0.0


def test_stage_scaling_and_sync() -> None:
    scaled = stage_scaled({
        "a": screen("a", 0.4, stage=0), "b": screen("b", 0.0, stage=0),
        "c": screen("c", 0.01, stage=1), "d": screen("d", -0.01, stage=1),
        "e": Screen("e", 1, 5.0, math.inf, 0.0),
    })  # fmt: skip
    assert scaled["a"] == pytest.approx(2.0) and scaled["b"] == 0.0
    assert scaled["c"] == pytest.approx(1.0) and scaled["d"] == pytest.approx(-1.0)
    assert scaled["e"] < -1e8
    assert sync_score(0.0, 3.0) == 1.0 and sync_score(1.5, 3.0) == 0.5
    assert sync_score(9.0, 3.0) == 0.0 and sync_score(math.inf, 3.0) == 0.0
