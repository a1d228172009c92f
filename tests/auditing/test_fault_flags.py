"""`tessera node --fault KIND` reaches `miner.fault`; unknown kinds are refused; honest is None."""

import pytest

from node.cli import build_parser, node_overrides
from node.config import load_node_config
from node.config_loader import ConfigError
from node.mining import faults


@pytest.mark.parametrize("kind", faults.FAULTS)
def test_fault_flag_sets_miner_fault(kind: str) -> None:
    args = build_parser().parse_args(["node", "--role", "miner", "--fault", kind])
    config = load_node_config(None, node_overrides(args))
    assert config.miner.fault == kind
    behaviour = faults.make(kind)
    if kind in faults.MERGE_FAULTS:  # a cheat of the merge: the compute stays honest
        assert behaviour is None
    else:
        assert behaviour is not None and behaviour.kind == kind


def test_no_fault_is_honest_and_unknown_is_refused() -> None:
    args = build_parser().parse_args(["node", "--role", "miner"])
    assert load_node_config(None, node_overrides(args)).miner.fault == ""
    assert faults.make("") is None
    with pytest.raises(ConfigError, match="miner.fault"):
        load_node_config(None, {"node.roles": ["miner"], "miner.fault": "sloppy"})


def test_an_intermittent_fault_cheats_in_one_window_of_its_period() -> None:
    config = load_node_config(None, {"node.roles": ["miner"], "miner.fault": "lazy:0.25"})
    behaviour = faults.make(config.miner.fault)
    assert isinstance(behaviour, faults.Intermittent) and behaviour.kind == "lazy:0.25"
    assert isinstance(behaviour.inner, faults.Lazy) and behaviour.period == 4
    cheats = [w for w in range(12) if behaviour._now((w, 0, "r")) is behaviour.inner]
    assert cheats == [3, 7, 11]
    for bad in ("stale:0.5", "lazy:0", "lazy:1.5", "lazy:x", "sloppy:0.5"):
        with pytest.raises(ConfigError, match="miner.fault"):
            load_node_config(None, {"node.roles": ["miner"], "miner.fault": bad})
