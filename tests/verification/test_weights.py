"""Scores to chain weights: uids through the metagraph, normalisation, the owner burn."""

import pytest

from verification.weights import uid_weights

UIDS = {"hk-a": 3, "hk-b": 5, "hk-c": 7}


def test_scores_map_to_uids_and_sum_to_one() -> None:
    weights = uid_weights({"hk-a": 30.0, "hk-b": 10.0, "unregistered": 99.0}, UIDS)
    assert weights == {3: pytest.approx(0.75), 5: pytest.approx(0.25)}


def test_burn_takes_its_fraction_and_the_rest_is_shared() -> None:
    weights = uid_weights({"hk-a": 1.0, "hk-b": 1.0}, UIDS, burn_uid=0, burn_fraction=0.2)
    assert weights == {0: pytest.approx(0.2), 3: pytest.approx(0.4), 5: pytest.approx(0.4)}
    assert uid_weights({}, UIDS, burn_uid=0, burn_fraction=0.2) == {0: 1.0}


def test_nothing_to_say_and_bad_scores() -> None:
    assert uid_weights({"hk-a": 0.0, "hk-b": float("nan"), "hk-c": -1.0}, UIDS) == {}
    with pytest.raises(ValueError):
        uid_weights({"hk-a": 1.0}, UIDS, burn_fraction=0.5)
