"""Contract tests of `BittensorChain`: the bittensor SDK's real intent code (SetWeights, ServeAxon,
BurnedRegister) runs against an in-memory `Substrate`, and the test reads what it submitted."""

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest
from bittensor.intents import normalize
from bittensor.intents.weights import clip_to_max_weight
from bittensor_wallet import Wallet

from node.chain.bittensor_chain import (
    BittensorChain,
    axon_of,
    hyperparams_from_storage,
    metagraph_from_sdk,
    multiaddr_of,
)
from node.chain.client import ChainClient
from node.chain.records import ChainError, ChainFault, Hyperparams

NETUID = 7
BLOCK = 1000


class FakeSubstrate:
    """The slice of `bittensor.Substrate` that reads and intents touch: storage as a dict of
    `(item, params) -> value`, calls composed as-is, and every submission recorded."""

    def __init__(self, storage: dict[tuple[str, tuple[Any, ...]], Any] | None = None) -> None:
        self.storage = dict(storage or {})
        self.maps: dict[str, list[tuple[Any, Any]]] = {}
        self.runtime: dict[tuple[str, tuple[Any, ...]], Any] = {}
        self.submitted: list[tuple[Any, str]] = []
        self.signed: list[tuple[Any, str]] = []
        self.outcome = bt.ExtrinsicResult(success=True, extrinsic_id=f"{BLOCK + 1}-0002")
        self.read_error: Exception | None = None
        self.token_symbols: dict[int, str] = {}

    def balance(self, rao: int, netuid: int = 0) -> Any:
        return bt.Balance(int(rao), netuid)

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _read(self) -> None:
        if self.read_error is not None:
            raise self.read_error

    async def block_number(self) -> int:
        self._read()
        return BLOCK

    async def finalized_block_number(self) -> int:
        return BLOCK

    async def block_hash(self, block: int | None = None) -> str:
        return f"0x{block or BLOCK:064x}"

    async def block_time(self) -> float:
        return 0.001

    async def query(self, module: str, name: str, params: Any = None, block_hash: Any = None):
        self._read()
        return self.storage.get((name, tuple(params or ())))

    async def query_map(self, module: str, name: str, params: Any = None, block_hash: Any = None):
        self._read()
        return self.maps.get(name, [])

    async def runtime_call(self, api: str, method: str, params: Any, block_hash: Any = None):
        self._read()
        return self.runtime.get((method, tuple(params)))

    async def compose(self, call: Any) -> Any:
        return call

    async def estimate_fee(self, call: Any, keypair: Any) -> Any:
        return bt.Balance(1000)

    async def submit(self, call: Any, keypair: Any, **_: Any) -> Any:
        self.submitted.append((call, keypair.ss58_address))
        return self.outcome

    # MEV-shielded submission (BurnedRegister): an all-zero ML-KEM-768 key is a valid one.
    async def mev_next_key(self) -> bytes:
        return bytes(1184)

    async def account_next_index(self, address: str) -> int:
        return 0

    async def sign_extrinsic(self, call: Any, keypair: Any, *, nonce: int, period: int):
        self.signed.append((call, keypair.ss58_address))
        return b"inner", "0xinner"

    async def find_extrinsic(self, extrinsic_hash: str, block_hash: str) -> Any:
        return bt.ExtrinsicResult(success=True, extrinsic_id=f"{BLOCK + 1}-0003")


@pytest.fixture(autouse=True)
def _token_symbol_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Client.connect` caches token symbols on disk; keep that out of the home directory."""
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "symbols.json"))


@pytest.fixture
def wallet(tmp_path: Path) -> Any:
    w = Wallet(name="val", hotkey="hk", path=str(tmp_path / "wallets"))
    w.create_new_coldkey(use_password=False, suppress=True, overwrite=True)
    w.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    return w


def registered(hotkey: str, **params: Any) -> FakeSubstrate:
    """A subnet where `hotkey` is uid 0, with SubtensorModule storage `params` per subnet."""
    storage: dict[tuple[str, tuple[Any, ...]], Any] = {("Uids", (NETUID, hotkey)): 0}
    storage.update({(name, (NETUID,)): value for name, value in params.items()})
    return FakeSubstrate(storage)


def on(fake: FakeSubstrate, keys: Any) -> BittensorChain:
    return BittensorChain(keys, network="test", substrate=fake)


def test_import_leaves_bittensor_unimported() -> None:
    code = "import sys, node.chain.bittensor_chain; sys.exit('bittensor' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("network", ["", "mainnet", "devnet", "http://127.0.0.1:9944"])
def test_network_must_be_explicit_and_known(wallet: Any, network: str) -> None:
    with pytest.raises(ValueError, match="network"):
        BittensorChain(wallet, network=network)
    with pytest.raises(TypeError):
        BittensorChain(wallet)  # type: ignore[call-arg]


async def test_set_weights_submits_clipped_u16_weights(wallet: Any) -> None:
    hotkey = wallet.hotkey.ss58_address
    fake = registered(hotkey, MaxWeightsLimit=32768, MinAllowedWeights=2)
    chain: ChainClient = on(fake, wallet)  # mypy checks the protocol is met
    assert chain.hotkey == hotkey

    block = await chain.set_weights(NETUID, {3: 0.0, 1: 0.9, 2: 0.1})

    assert block == BLOCK + 1
    [(call, signer)] = fake.submitted
    assert (call.module, call.function) == ("SubtensorModule", "set_mechanism_weights")
    assert signer == hotkey
    assert call.params["netuid"] == NETUID
    limit = 32768 / 65535
    expected = normalize([1, 2, 3], clip_to_max_weight([0.9, 0.1, 0.0], limit))
    assert (call.params["dests"], call.params["weights"]) == expected
    assert call.params["dests"] == [1, 2]  # the zero weight is dropped
    values = call.params["weights"]
    assert max(values) == 65535 and max(values) / sum(values) <= limit + 1e-4
    assert values != [65535, round(0.1 / 0.9 * 65535)]  # clipped, not merely max-upscaled


async def test_set_weights_commits_under_commit_reveal(wallet: Any) -> None:
    hotkey = wallet.hotkey.ss58_address
    fake = registered(hotkey, CommitRevealWeightsEnabled=True, Tempo=360, RevealPeriodEpochs=1)
    chain = BittensorChain(wallet, network="local", substrate=fake)

    assert await chain.set_weights(NETUID, {1: 0.5, 2: 0.5}) == BLOCK + 1

    [(call, signer)] = fake.submitted
    assert (call.function, signer) == ("commit_timelocked_mechanism_weights", hotkey)
    assert call.params["netuid"] == NETUID and call.params["reveal_round"] > 0
    assert isinstance(call.params["commit"], bytes) and len(call.params["commit"]) > 32


async def test_set_weights_refused_before_submitting(wallet: Any) -> None:
    hotkey = wallet.hotkey.ss58_address
    few = registered(hotkey, MinAllowedWeights=3)
    with pytest.raises(ChainError) as err:
        await on(few, wallet).set_weights(NETUID, {1: 1, 2: 1})
    assert err.value.fault is ChainFault.WEIGHTS_REJECTED and "at least 3" in err.value.detail

    stranger = on(FakeSubstrate(), wallet)
    with pytest.raises(ChainError) as err:
        await stranger.set_weights(NETUID, {1: 1.0})
    assert err.value.fault is ChainFault.NOT_REGISTERED

    limited = registered(hotkey, WeightsSetRateLimit=100)
    limited.storage[("LastUpdate", (NETUID,))] = [BLOCK - 10]
    with pytest.raises(ChainError) as err:
        await on(limited, wallet).set_weights(NETUID, {1: 1})
    assert err.value.fault is ChainFault.RATE_LIMITED and "90 blocks" in err.value.detail
    assert not few.submitted and not limited.submitted


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("HotKeyNotRegisteredInSubNet", ChainFault.NOT_REGISTERED),
        ("SettingWeightsTooFast", ChainFault.RATE_LIMITED),
        ("CommittingWeightsTooFast", ChainFault.RATE_LIMITED),
        ("MaxWeightExceeded", ChainFault.WEIGHTS_REJECTED),
        ("NeuronNoValidatorPermit", ChainFault.WEIGHTS_REJECTED),
        ("IncorrectWeightVersionKey", ChainFault.WEIGHTS_REJECTED),
    ],
)
async def test_extrinsic_failure_maps_to_fault(wallet: Any, name: str, fault: ChainFault) -> None:
    fake = registered(wallet.hotkey.ss58_address)
    fake.outcome = bt.ExtrinsicResult(
        success=False, message="refused", error=bt.ChainError("the chain's reason", name)
    )
    chain = on(fake, wallet)
    with pytest.raises(ChainError) as err:
        await chain.set_weights(NETUID, {1: 1.0})
    assert err.value.fault is fault
    assert err.value.detail == f"{name}: the chain's reason"
    assert len(fake.submitted) == 1


@pytest.mark.parametrize(
    "error", [bt.RpcConnectionError("connection dropped"), ConnectionResetError("reset by peer")]
)
async def test_read_failure_is_unavailable(wallet: Any, error: Exception) -> None:
    fake = FakeSubstrate()
    fake.read_error = error
    chain = on(fake, wallet)
    reads = (
        chain.block,
        lambda: chain.metagraph(NETUID),
        lambda: chain.weights(NETUID),
        lambda: chain.hyperparams(NETUID),
        lambda: chain.set_weights(NETUID, {1: 1}),
    )
    for call in reads:
        with pytest.raises(ChainError) as err:
            await call()
        assert err.value.fault is ChainFault.UNAVAILABLE and str(error) in err.value.detail


async def test_unreachable_endpoint_is_unavailable(wallet: Any) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chain = BittensorChain(wallet.hotkey, network=f"ws://127.0.0.1:{port}")
    with pytest.raises(ChainError) as err:
        await chain.block()
    assert err.value.fault is ChainFault.UNAVAILABLE and str(port) in err.value.detail


def sdk_neuron(uid: int, **changes: Any) -> Any:
    fields: dict[str, Any] = dict(
        uid=uid, hotkey=f"hk{uid}", coldkey=f"ck{uid}", active=True, validator_permit=False,
        last_update=900 + uid, block_at_registration=10 * uid, rank=0.0, trust=0.25,
        consensus=0.5, incentive=0.125, dividends=0.0, pruning_score=0.0,
        emission=bt.Balance.from_rao(2_500_000_000, NETUID),
        alpha_stake=bt.Balance.from_rao(0, NETUID), tao_stake=bt.Balance.from_rao(0),
        total_stake=bt.Balance.from_rao(1_500_000_000, NETUID), axon=None, identity=None,
        commitment=None,
    )  # fmt: skip
    return bt.MetagraphNeuron(**(fields | changes))


def test_metagraph_mapping_from_sdk_records() -> None:
    neurons = [
        sdk_neuron(0, validator_permit=True, dividends=0.75, axon="203.0.113.5:9000"),
        sdk_neuron(1, axon="[2001:db8::1]:4001"),
        sdk_neuron(2),
    ]
    graph = bt.Metagraph(
        netuid=NETUID, mechid=0, name="t", symbol="t", block=1234, tempo=360, last_step=0,
        blocks_since_last_step=0, owner_hotkey="o", owner_coldkey="o", network_registered_at=0,
        num_uids=3, max_uids=256, price=None, moving_price=None, identity=None, neurons=neurons,
        commitments={}, unregistered_commitments={}, raw={},
    )  # fmt: skip

    ours = metagraph_from_sdk(graph)

    assert (ours.netuid, ours.block, len(ours.neurons)) == (NETUID, 1234, 3)
    v, m, idle = ours.neurons
    assert (v.uid, v.hotkey, v.coldkey, v.validator_permit) == (0, "hk0", "ck0", True)
    assert (v.stake, v.emission, v.dividends, v.trust) == (1.5, 2.5, 0.75, 0.25)
    assert (m.last_update, m.block_at_registration) == (901, 10)
    assert (m.incentive, m.consensus) == (0.125, 0.5)
    assert v.endpoint == "/ip4/203.0.113.5/tcp/9000"
    assert m.endpoint == "/ip6/2001:db8::1/tcp/4001"
    assert idle.endpoint == "" and v.validator_trust == 0.0
    assert ours.uid_of("hk1") == 1


async def test_metagraph_through_the_sdk_read(wallet: Any) -> None:
    fake = FakeSubstrate()
    fake.runtime[("get_metagraph", (NETUID,))] = {
        "netuid": NETUID, "block": BLOCK, "tempo": 360, "last_step": 0,
        "blocks_since_last_step": 0, "owner_hotkey": "o", "owner_coldkey": "o",
        "network_registered_at": 0, "hotkeys": ["hkA", "hkB"], "coldkeys": ["ckA", "ckB"],
        "validator_permit": [True, False], "last_update": [990, 980],
        "block_at_registration": [5, 6], "incentives": [0, 65535], "dividends": [65535, 0],
        "total_stake": [4_000_000_000, 0], "emission": [0, 1_000_000_000],
        "axons": [{"ip": 3405803781, "port": 9000, "ip_type": 4}, {"ip": 0, "port": 0}],
    }  # fmt: skip
    chain = on(fake, wallet)

    graph = await chain.metagraph(NETUID)

    a, b = graph.neurons
    assert (graph.block, a.hotkey, b.coldkey, a.stake, b.emission) == (BLOCK, "hkA", "ckB", 4, 1)
    assert (a.dividends, b.incentive, b.block_at_registration) == (1, 1, 6)
    assert (a.validator_permit, b.validator_permit) == (True, False)
    assert (a.endpoint, b.endpoint) == ("/ip4/203.0.113.5/tcp/9000", "")
    with pytest.raises(ChainError) as err:
        await chain.metagraph(NETUID + 1)
    assert err.value.fault is ChainFault.WRONG_SUBNET


async def test_hyperparams_from_chain_storage(wallet: Any) -> None:
    fake = registered(
        "x", Tempo=99, MaxWeightsLimit=6553, MinAllowedWeights=8, WeightsSetRateLimit=50,
        CommitRevealWeightsEnabled=True, RevealPeriodEpochs=2, ActivityCutoff=1000, Kappa=65535,
        ImmunityPeriod=7, MaxAllowedUids=128, MaxAllowedValidators=16, Yuma3On=False,
    )  # fmt: skip
    params = await on(fake, wallet).hyperparams(NETUID)

    assert (params.tempo, params.min_allowed_weights, params.weights_rate_limit) == (99, 8, 50)
    assert params.max_weight_limit == pytest.approx(0.1, abs=1e-4) and params.kappa == 1.0
    assert (params.commit_reveal, params.reveal_period, params.activity_cutoff) == (True, 2, 1000)
    assert (params.immunity_period, params.max_allowed_uids) == (7, 128)
    assert params.max_allowed_validators == 16
    assert params.yuma3 is False
    default = Hyperparams()
    assert (params.bonds_moving_avg, params.liquid_alpha) == (default.bonds_moving_avg, False)
    with pytest.raises(ChainError) as err:
        hyperparams_from_storage({"MaxWeightsLimit": 0})
    assert err.value.fault is ChainFault.MALFORMED


async def test_weights_are_the_chain_u16_rows(wallet: Any) -> None:
    fake = FakeSubstrate()
    fake.maps["Weights"] = [(0, [(1, 65535), (2, 100)]), (3, [])]
    chain = on(fake, wallet)
    assert await chain.weights(NETUID) == {0: {1: 65535, 2: 100}, 3: {}}


async def test_serve_publishes_the_multiaddr_ip_and_port(wallet: Any) -> None:
    fake = registered(wallet.hotkey.ss58_address)
    chain = on(fake, wallet.hotkey)

    await chain.serve(NETUID, "/ip4/203.0.113.5/tcp/9000/p2p/12D3KooWExample")

    [(call, signer)] = fake.submitted
    assert (call.function, signer) == ("serve_axon", wallet.hotkey.ss58_address)
    assert (call.params["ip"], call.params["port"], call.params["ip_type"]) == (3405803781, 9000, 4)
    for bad in ("/dns4/example.org/tcp/1", "/ip4/1.2.3.4/udp/9/quic", "1.2.3.4:0", "nonsense"):
        with pytest.raises(ChainError) as err:
            await chain.serve(NETUID, bad)
        assert err.value.fault is ChainFault.MALFORMED
    assert len(fake.submitted) == 1


def test_endpoint_round_trip() -> None:
    assert axon_of("/ip6/2001:db8::1/tcp/4001") == ("2001:db8::1", 4001)
    assert axon_of("[::1]:80") == ("::1", 80)
    assert multiaddr_of("10.0.0.1:1") == "/ip4/10.0.0.1/tcp/1" and multiaddr_of(None) == ""


async def test_register_burns_with_the_coldkey(wallet: Any) -> None:
    fake = FakeSubstrate()
    chain = on(fake, wallet)

    async def assign_uid(call: Any, keypair: Any, **_: Any) -> Any:
        fake.storage[("Uids", (NETUID, chain.hotkey))] = 4
        return await FakeSubstrate.submit(fake, call, keypair)

    fake.submit = assign_uid  # type: ignore[method-assign]
    assert await chain.register(NETUID) == 4

    [(inner, signer)] = fake.signed
    assert (inner.function, inner.params["hotkey"]) == ("burned_register", chain.hotkey)
    assert signer == wallet.coldkeypub.ss58_address != chain.hotkey
    assert fake.submitted[0][0].function == "submit_encrypted"  # the SDK MEV-shields it
    with pytest.raises(ChainError) as err:
        await chain.register(NETUID)
    assert err.value.fault is ChainFault.ALREADY_REGISTERED
    with pytest.raises(ChainError) as err:
        await on(fake, wallet.hotkey).register(NETUID)
    assert err.value.fault is ChainFault.MALFORMED and "coldkey" in err.value.detail
