"""The run's series for the dashboard: loss per optimizer step, miner throughput and versions."""

from node.run_control.series import loss_curve, miner_rates, miner_versions


def test_loss_curve_is_one_point_per_group_of_accumulate_batches() -> None:
    records = [
        {"window": 0, "closed": True, "losses": {"1": 5.0, "0": 6.0, "3": 3.0, "2": 4.0}},
        {"window": 1, "closed": True, "losses": {"0": 2.0, "1": 1.0, "2": 9.0}},  # one dropped
        {"window": 2, "losses": {"0": 1.0, "1": 0.0, "2": 7.0}},  # open: complete groups only
    ]
    assert loss_curve(records, accumulate=2) == [
        [1, 5.5],
        [2, 3.5],
        [3, 1.5],
        [4, 9.0],
        [5, 0.5],
    ]
    assert loss_curve(records, accumulate=2, limit=2) == [[4, 9.0], [5, 0.5]]
    assert loss_curve([], accumulate=4) == []


def test_rates_and_versions_come_from_the_newest_closed_window() -> None:
    records = [
        {"window": 0, "closed": True, "seconds": 2.0, "work": {"a": {"backward": 8}}},
        {
            "window": 1,
            "closed": True,
            "seconds": 4.0,
            "work": {"a": {"backward": 6, "forward": 6}, "b": {"forward": 2}},
            "members": {"a": [0, "ckpt-a"], "b": [1, "ckpt-b"], "c": [0, "ckpt-c"]},
            "versions": {"0": "v0", "1": "v1"},
        },
        {"window": 2, "work": {"a": {"backward": 100}}},
    ]
    assert miner_rates(records) == {"a": 1.5, "b": 0.0}
    assert miner_versions(records) == {"a": "v0", "b": "v1", "c": "v0"}
    assert miner_rates(records[2:]) == {} and miner_versions([]) == {}
