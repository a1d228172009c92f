"""Targeted audit sampling, and the pay rules against sampled audits: cheating does not pay."""

import random
import statistics

import pytest

from verification.sampling import AuditHistory, SamplingRule, probabilities, targeted_draw
from verification.scores import Decay, WindowWork, standings
from verification.verdict import Outcome

MINERS = [f"m{i}" for i in range(8)]


def secret(seed: int) -> bytes:
    return random.Random(seed).randbytes(32)


def test_probabilities_follow_the_rule() -> None:
    rule = SamplingRule(floor=0.25, pay_factor=1.0, inconclusive_rate=0.25)
    even = dict.fromkeys(MINERS, 1 / 8)
    base = probabilities(rule, MINERS, miners_per_window=2, history={}, pay_share=even)
    assert base == dict.fromkeys(MINERS, 0.25)  # 2 of 8 is the floor too
    many = probabilities(rule, MINERS, miners_per_window=4, history={}, pay_share=even)
    assert set(many.values()) == {0.5}
    rich = probabilities(rule, MINERS, miners_per_window=2, history={},
                         pay_share={**even, "m0": 2 / 8})  # fmt: skip
    assert rich["m0"] == pytest.approx(0.5) and rich["m1"] == 0.25  # twice a fair share
    history = {
        "m1": AuditHistory(audits=4, inconclusive=2),  # above the rate: audited more
        "m2": AuditHistory(audits=4, inconclusive=1),  # at the rate: not
        "m3": AuditHistory(audits=1, fails=1),
    }
    odds = probabilities(rule, MINERS, miners_per_window=2, history=history, pay_share=even)
    assert (odds["m1"], odds["m2"], odds["m3"]) == (0.5, 0.25, 1.0)
    assert probabilities(rule, [], miners_per_window=2, history={}, pay_share={}) == {}
    capped = probabilities(rule, MINERS, miners_per_window=2, history={},
                           pay_share={"m0": 1.0})  # fmt: skip
    assert capped["m0"] == 1.0
    for bad in ({"floor": 1.5}, {"pay_factor": -1.0}, {"inconclusive_factor": 0.5}):
        with pytest.raises(ValueError):
            SamplingRule(**bad)


def test_targeted_draws_are_reproducible_and_take_each_miner_at_its_probability() -> None:
    chances = {"m0": 0.0, "m1": 0.25, "m2": 0.75, "m3": 1.0}
    table = [(m, 3) for m in chances]
    one = targeted_draw(secret(1), 4, table, chances)
    assert one == targeted_draw(secret(1), 4, list(reversed(table)), chances)
    assert all(m.units == (0, 1, 2) for m in one.miners)
    counts = dict.fromkeys(chances, 0)
    runs = 2000
    for i in range(runs):
        for m in targeted_draw(secret(i), 4, table, chances).peers():
            counts[m] += 1
    for m, p in chances.items():  # within 4 standard deviations
        assert abs(counts[m] - p * runs) <= 4 * (runs * p * (1 - p)) ** 0.5 + 1e-9, (m, counts)
    other_window = {tuple(targeted_draw(secret(1), w, table, chances).peers()) for w in range(40)}
    assert len(other_window) > 1  # each window draws anew
    with pytest.raises(ValueError):
        targeted_draw(b"short", 0, table, chances)
    with pytest.raises(ValueError):
        targeted_draw(secret(1), 0, [("m0", 1), ("m0", 2)], chances)
    with pytest.raises(ValueError):
        targeted_draw(secret(1), 0, table, {"m1": 1.5})


def share_of_cheater(f: float, *, penalty: int, seed: int, windows: int = 1600) -> float:
    """Simulate the validator's rules: 8 miners, m0 cheats in a fraction `f` of its windows;
    each window every miner is drawn with its probability under the default sampling rule
    and an audited cheated window fails. Returns m0's mean incentive (every 4th window, after a
    burn-in of 200) divided by the median honest miner's."""
    rng = random.Random(seed)
    rule, decay, units = SamplingRule(), Decay(t_decay=10), 16
    keep = decay.t_decay + penalty + 1
    audits: dict[tuple[str, int], Outcome] = {}
    ratios = []
    for w in range(windows):
        recent = [(m, v, o) for (m, v), o in audits.items() if w - decay.t_decay <= v < w]
        history = {
            m: AuditHistory(
                audits=sum(1 for x, _, _ in recent if x == m),
                fails=sum(1 for x, _, o in recent if x == m and o is Outcome.FAIL),
            )
            for m in MINERS
        }
        chances = probabilities(rule, MINERS, miners_per_window=2, history=history,
                                pay_share=dict.fromkeys(MINERS, 1 / 8))  # fmt: skip
        cheated = rng.random() < f
        for m in targeted_draw(rng.randbytes(32), w, [(m, units) for m in MINERS], chances).peers():
            audits[m, w] = Outcome.FAIL if m == "m0" and cheated else Outcome.PASS
        if w < 200 or w % 4:
            continue
        records = [
            WindowWork(m, v, units, (audits[m, v],) if (m, v) in audits else ())
            for m in MINERS
            for v in range(max(0, w - keep), w + 1)
        ]
        pay = standings(records, w, decay, penalty_windows=penalty)
        honest = statistics.median(pay[m].incentive for m in MINERS[1:])
        ratios.append(pay["m0"].incentive / honest)
    return statistics.fmean(ratios)


@pytest.mark.parametrize("f", [0.1, 0.25, 0.5, 1.0])
def test_cheating_in_any_share_of_windows_earns_under_a_tenth_of_honest_pay(f: float) -> None:
    """docs/decisions.md (Pay rules): at the default sampling (every miner at least 1/4 of the
    windows) and the default penalty, a miner cheating in a fraction f >= 0.1 of its windows
    earns under 10 % of an honest miner's pay; without the penalty, far more."""
    penalty = 150  # the default `validator.penalty_windows`
    shares = [share_of_cheater(f, penalty=penalty, seed=s) for s in range(3)]
    assert statistics.fmean(shares) < 0.10, shares
    if f == 0.1:
        assert share_of_cheater(f, penalty=0, seed=0) > 0.5  # the window alone: cheating pays
