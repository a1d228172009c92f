"""Config loading: defaults < TOML file < flags, and clear errors naming the key and file."""

from pathlib import Path

import pytest

from node.cli import build_parser, node_overrides
from node.config import NodeConfig, load_node_config
from node.config_loader import ConfigError, build, parse_assignment


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_defaults_file_then_flags(tmp_path: Path) -> None:
    cfg_file = write(
        tmp_path,
        """
[node]
roles = ["miner"]
log_level = "debug"
[http]
listen = "127.0.0.1:9000"
[store]
map_size_mib = 64
[miner]
capacity = 2
""",
    )
    args = build_parser().parse_args(
        [
            "node",
            "--config",
            str(cfg_file),
            "--http",
            "127.0.0.1:9100",
            "--role",
            "validator",
            "--set",
            "store.map_size_mib=128",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/1/p2p/x",
        ]
    )
    cfg = load_node_config(args.config, node_overrides(args))
    assert cfg.http.listen == "127.0.0.1:9100"  # flag beats file
    assert cfg.node.roles == ["validator"]  # flag replaces the file's list
    assert cfg.node.log_level == "debug"  # file beats default
    assert cfg.store.map_size_mib == 128  # --set beats file
    assert cfg.miner.capacity == 2.0 and isinstance(cfg.miner.capacity, float)
    assert cfg.p2p.bootstrap == ["/ip4/127.0.0.1/tcp/1/p2p/x"]
    assert cfg.validator.t_decay == NodeConfig().validator.t_decay  # untouched default


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[p2p]\nlisten_addrs = []\n")
    with pytest.raises(ConfigError) as err:
        load_node_config(path, {"node.roles": ["miner"]})
    assert "p2p.listen_addrs" in str(err.value) and str(path) in str(err.value)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'minr'"):
        load_node_config(write(tmp_path, "[minr]\ncapacity = 1\n"), {"node.roles": ["miner"]})


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[store]\nmap_size_mib = "big"\n', "store.map_size_mib"),
        ('[node]\nroles = "miner"\n', "node.roles"),
        ("[node]\nroles = [1]\n", "node.roles[0]"),
        ('[node]\nlog_level = "loud"\n', "node.log_level"),
        ("[miner]\ncapacity = true\n", "miner.capacity"),
        ("[http]\nlisten = 8080\n", "http.listen"),
        ("store = 3\n", "store"),
    ],
)
def test_wrong_type_names_key(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_node_config(write(tmp_path, toml), {"node.roles": ["miner"]})
    assert f"'{key}'" in str(err.value)


def test_invalid_value_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="miner.capacity must be > 0"):
        load_node_config(write(tmp_path, "[miner]\ncapacity = 0\n"), {"node.roles": ["miner"]})
    with pytest.raises(ConfigError, match="HOST:PORT"):
        load_node_config(None, {"node.roles": ["miner"], "http.listen": "nowhere"})
    with pytest.raises(ConfigError, match="unknown role"):
        load_node_config(None, {"node.roles": ["farmer"]})


def test_missing_and_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_node_config(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_node_config(write(tmp_path, "[node\n"), {})


def test_no_role_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no role"):
        load_node_config(None, {})


def test_roles_deduplicate_and_combine() -> None:
    cfg = load_node_config(None, {"node.roles": ["miner", "validator", "miner"]})
    assert cfg.node.roles == ["miner", "validator"]


def test_set_assignment_parsing() -> None:
    assert parse_assignment("store.map_size_mib=4096") == ("store.map_size_mib", 4096)
    assert parse_assignment('p2p.listen=["/ip4/0.0.0.0/tcp/1"]')[1] == ["/ip4/0.0.0.0/tcp/1"]
    assert parse_assignment("orchestrator.run_id=run-7") == ("orchestrator.run_id", "run-7")
    with pytest.raises(ConfigError):
        parse_assignment("novalue")


def test_build_rejects_unknown_nested_key() -> None:
    with pytest.raises(ConfigError, match="unknown key 'node.homedir'"):
        build(NodeConfig, {"node": {"homedir": "/x"}}, source="test")


def test_shipped_example_config_loads() -> None:
    example = Path(__file__).parents[2] / "systemd" / "example.toml"
    cfg = load_node_config(example, {})
    assert cfg.node.roles == ["miner"] and cfg.store.map_size_mib == 4096
    assert cfg.admission.mode == "any-bound"


def test_chain_role_section_takes_a_table_of_stakes(tmp_path: Path) -> None:
    path = tmp_path / "chain.toml"
    path.write_text(
        '[node]\nroles = ["chain"]\n[devnet_chain]\nnetuid = 3\n'
        "[devnet_chain.stakes]\n5Grw = 10\n[devnet_chain.params]\ntempo = 20\n"
    )
    cfg = load_node_config(path, {})
    assert cfg.devnet_chain.stakes == {"5Grw": 10.0} and cfg.devnet_chain.params.tempo == 20
    path.write_text('[node]\nroles = ["chain"]\n[devnet_chain.stakes]\n5Grw = "lots"\n')
    with pytest.raises(ConfigError, match=r"devnet_chain\.stakes\.5Grw"):
        load_node_config(path, {})


def test_chain_and_netuid_flags_fill_the_chain_section() -> None:
    args = build_parser().parse_args(
        ["node", "--role", "miner", "--chain", "test", "--netuid", "12",
         "--set", 'chain.wallet_name="w"']
    )  # fmt: skip
    cfg = load_node_config(None, node_overrides(args))
    assert (cfg.chain.network, cfg.chain.netuid, cfg.chain.wallet_name) == ("test", 12, "w")
    with pytest.raises(ConfigError, match="wallet_name"):
        load_node_config(None, node_overrides(build_parser().parse_args(
            ["node", "--role", "miner", "--chain", "test"])))  # fmt: skip
