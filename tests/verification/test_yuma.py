"""Yuma consensus epoch: the stake-weighted median against subtensor's quickselect, the masks,
and the properties the incentive rests on (emission conserved, a colluding minority gets its
miner nothing and loses validator trust, emission by stake when nobody set weights)."""

import dataclasses

import numpy as np
import pytest

from verification.yuma import EpochInputs, epoch
from verification.yuma_math import weighted_median_col

KAPPA = 32767 / 65535


def quickselect_median(stake: list[float], score: list[float], kappa: float) -> float:
    """subtensor's `weighted_median` (math.rs), written out as it loops, as the reference."""
    total = sum(s for s in stake if s > 0)
    pairs = [(s / total, x) for s, x in zip(stake, score, strict=True) if s > 0]
    minority, lo, hi = 1.0 - kappa, 0.0, 1.0
    while True:
        if not pairs:
            return 0.0
        if len(pairs) == 1:
            return pairs[0][1]
        pivot = pairs[len(pairs) // 2][1]
        lower = [p for p in pairs if p[1] < pivot]
        upper = [p for p in pairs if p[1] > pivot]
        below, over = sum(s for s, _ in lower), sum(s for s, _ in upper)
        if lower and minority < lo + below:
            pairs, hi = lower, lo + below
        elif upper and hi - over <= minority:
            pairs, lo = upper, hi - over
        else:
            return pivot


def test_weighted_median_is_subtensors_quickselect() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        rows = int(rng.integers(1, 9))
        stake = rng.random(rows) * (rng.random(rows) > 0.2)
        scores = rng.choice([0.0, 0.1, 0.25, 0.5, 0.7, 1.0], size=(rows, 5))
        kappa = float(rng.choice([KAPPA, 0.3, 0.66]))
        got = weighted_median_col(stake, scores, kappa)
        for j in range(5):
            want = (
                quickselect_median(list(stake), list(scores[:, j]), kappa)
                if stake.sum() > 0
                else 0.0
            )
            assert got[j] == want, (trial, j, stake, scores[:, j], kappa)


def network(
    stake: list[float], weights: list[list[float]], *, block: int = 1000, **kw: object
) -> EpochInputs:
    n = len(stake)
    return EpochInputs(
        stake=np.array(stake, dtype=np.float64),
        weights=np.array(weights, dtype=np.float64),
        bonds=np.zeros((n, n)),
        validator_permit=np.array([s > 0 for s in stake]),
        last_update=np.full(n, block, dtype=np.int64),
        block_at_registration=np.zeros(n, dtype=np.int64),
        current_block=block,
        **kw,  # type: ignore[arg-type]
    )


# uids 0-3 validators, 4-7 miners
HONEST = [0, 0, 0, 0, 0.4, 0.3, 0.2, 0.1]


def test_emission_is_conserved_and_split_between_miners_and_validators() -> None:
    rng = np.random.default_rng(1)
    weights = [list(rng.random(8) * np.array([0, 0, 0, 0, 1, 1, 1, 1])) for _ in range(4)]
    x = network([4, 3, 2, 1, 0, 0, 0, 0], weights + [[0.0] * 8] * 4, emission=1000.0)
    r = epoch(x)
    assert r.emission.sum() == pytest.approx(1000.0)
    assert r.server_emission.sum() == pytest.approx(500.0)
    assert r.validator_emission.sum() == pytest.approx(500.0)
    assert np.allclose(r.emission, r.server_emission + r.validator_emission)
    assert (r.server_emission[:4] == 0).all() and (r.validator_emission[4:] == 0).all()


def test_a_colluding_minority_gets_its_miner_nothing_and_loses_validator_trust() -> None:
    colluder = [0, 0, 0, 0, 0, 0, 0, 1.0]  # votes only for its own miner, uid 7
    honest = [0, 0, 0, 0, 0.4, 0.3, 0.3, 0]
    x = network([0.3, 0.3, 0.3, 0.1, 0, 0, 0, 0], [honest] * 3 + [colluder] + [[0.0] * 8] * 4)
    bonds = x.bonds
    for block in range(1000, 1000 + 5 * 360, 360):  # a few epochs, so bonds build up
        x = dataclasses.replace(
            x, bonds=bonds, current_block=block, last_update=np.full(8, block, dtype=np.int64)
        )
        r = epoch(x)
        bonds = r.bonds
    assert r.incentive[7] == 0 and r.server_emission[7] == 0
    assert r.incentive[4:7] == pytest.approx([0.4, 0.3, 0.3])
    assert r.validator_trust[3] == 0 and r.validator_trust[:3] == pytest.approx([1, 1, 1])
    assert r.dividends[3] == 0 and r.dividends[:3] == pytest.approx([1 / 3] * 3)


def test_no_weights_means_emission_by_active_stake() -> None:
    x = network([0.5, 0.3, 0.2, 0, 0, 0, 0, 0], [[0.0] * 8] * 8, emission=10.0)
    x = dataclasses.replace(
        x, last_update=np.array([1000, 1000, 0, 0, 0, 0, 0, 0]), current_block=5500
    )
    r = epoch(x)
    assert not r.active[2]
    assert r.server_emission.sum() == 0
    # uid 2 is inactive: only the active validators' stake counts; none active: all stake
    assert r.validator_emission[:3] == pytest.approx([10 * 0.5 / 0.8, 10 * 0.3 / 0.8, 0])
    x_none = dataclasses.replace(x, last_update=np.zeros(8, dtype=np.int64))
    assert epoch(x_none).validator_emission[:3] == pytest.approx([5.0, 3.0, 2.0])


def test_self_weights_and_weights_older_than_the_registration_do_not_count() -> None:
    own = [1.0, 0, 0, 0, 0, 0, 0, 0]  # validator 0 weights itself
    late = [0, 0, 0, 0, 0, 0, 0, 1.0]  # miner 7 registered after the validator's weights
    x = network([0.5, 0.5, 0, 0, 0, 0, 0, 0], [own, late] + [[0.0] * 8] * 6)
    registered = np.array([0, 0, 0, 0, 0, 0, 0, 1000], dtype=np.int64)
    r = epoch(dataclasses.replace(x, block_at_registration=registered))
    assert r.incentive.sum() == 0 and r.consensus.sum() == 0
    assert r.validator_emission.sum() == pytest.approx(1.0)  # fell back to stake


def test_permits_go_to_the_top_stake_and_forbidden_rows_do_not_vote() -> None:
    x = network(
        [0.4, 0.3, 0.2, 0.1, 0, 0, 0, 0],
        [[0, 0, 0, 0, 1.0, 0, 0, 0]] * 3 + [[0, 0, 0, 0, 0, 0, 0, 1.0]] + [[0.0] * 8] * 4,
        max_allowed_validators=3,
    )
    r = epoch(dataclasses.replace(x, validator_permit=np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)))
    assert list(r.new_validator_permit) == [True, True, True] + [False] * 5
    assert r.consensus[7] == 0 and r.incentive[4] == pytest.approx(1.0)


@pytest.mark.parametrize("variant", ["classic", "yuma3", "liquid-alpha"])
def test_every_bond_variant_keeps_bonds_and_dividends_proportions(variant: str) -> None:
    rng = np.random.default_rng(2)
    weights = [list(rng.random(8) * np.array([0, 0, 0, 0, 1, 1, 1, 1])) for _ in range(4)]
    x = network(
        [4, 3, 2, 1, 0, 0, 0, 0],
        weights + [[0.0] * 8] * 4,
        yuma3=variant != "classic",
        liquid_alpha=variant == "liquid-alpha",
    )
    bonds = x.bonds
    for _ in range(3):
        r = epoch(dataclasses.replace(x, bonds=bonds))
        bonds = r.bonds
        assert ((bonds >= 0) & (bonds <= 1)).all()
        assert r.dividends.sum() == pytest.approx(1.0) and (r.dividends[4:] == 0).all()
    assert (bonds[:4, 4:] > 0).any() and (bonds[4:] == 0).all()
