"""The devnet chain's ledger on a real LMDB store: registration and replacement, permits, the
weight rules, commit-reveal, the Yuma epoch it stores, and a restart that keeps everything."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from node.chain.epoch_record import unpack_inputs
from node.chain.ledger import DevnetLedger, commit_digest
from node.chain.records import ChainError, ChainFault, Hyperparams
from store import Store, StoreConfig
from verification.yuma import epoch

PARAMS = Hyperparams(tempo=10, weights_rate_limit=5, min_allowed_weights=2, immunity_period=20,
                     max_allowed_uids=6, max_allowed_validators=2)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "chain", StoreConfig()) as s:
        yield s


def subnet(store: Store, params: Hyperparams = PARAMS) -> DevnetLedger:
    """uids 0, 1 validators (stake 3 and 1), uids 2-4 miners; the first epoch gives permits."""
    ledger = DevnetLedger(store, 7, params)
    for i, name in enumerate(["v0", "v1", "m2", "m3", "m4"]):
        assert ledger.register(name, f"cold-{name}", block=1) == i
    ledger.add_stake("v0", 3.0)
    ledger.add_stake("v1", 1.0)
    assert ledger.maybe_epoch(10) is not None
    return ledger


def refused(fault: ChainFault) -> Any:
    return pytest.raises(ChainError, match=fault.value)


def test_registration_uids_and_replacement_when_full(store: Store) -> None:
    ledger = subnet(store)
    with refused(ChainFault.ALREADY_REGISTERED):
        ledger.register("m2", "c", block=11)
    assert ledger.register("m5", "c", block=11) == 5
    with refused(ChainFault.SUBNET_FULL):  # everyone is within the immunity period
        ledger.register("m6", "c", block=12)
    ledger.set_weights("v0", {2: 1.0, 3: 1.0, 4: 0.5, 5: 0.2}, block=12)
    ledger.maybe_epoch(20)
    # at block 25 the uids registered at block 1 are past immunity (20 blocks), uid 5 is not
    emissions = {n.uid: n.emission for n in ledger.metagraph(25).neurons}
    lowest = min((e, u) for u, e in emissions.items() if u != 5)[1]
    assert ledger.register("m6", "c", block=25) == lowest
    graph = ledger.metagraph(25)
    assert graph.neurons[lowest].hotkey == "m6" and graph.uid_of("m6") == lowest
    assert graph.neurons[lowest].block_at_registration == 25
    assert len(graph.neurons) == 6


def test_permits_rate_limit_and_weight_rules(store: Store) -> None:
    ledger = subnet(store)
    permits = [n.validator_permit for n in ledger.metagraph(10).neurons]
    assert permits == [True, True, False, False, False]
    with refused(ChainFault.WEIGHTS_REJECTED):  # a miner has no permit
        ledger.set_weights("m2", {3: 1.0, 4: 1.0}, block=11)
    with refused(ChainFault.NOT_REGISTERED):
        ledger.set_weights("stranger", {3: 1.0, 4: 1.0}, block=11)
    with refused(ChainFault.WEIGHTS_REJECTED):  # fewer than min_allowed_weights
        ledger.set_weights("v0", {2: 1.0}, block=11)
    with refused(ChainFault.MALFORMED):
        ledger.set_weights("v0", {2: 1.0, 9: 1.0}, block=11)
    with refused(ChainFault.MALFORMED):
        ledger.set_weights("v0", {2: 1.0, 3: float("nan")}, block=11)
    assert ledger.weights() == {}  # refused extrinsics changed nothing
    ledger.set_weights("v0", {2: 2.0, 3: 1.0}, block=11)
    assert ledger.weights() == {0: {2: 65535, 3: 32768}}
    with refused(ChainFault.RATE_LIMITED):
        ledger.set_weights("v0", {2: 1.0, 3: 1.0}, block=14)
    ledger.set_weights("v0", {2: 1.0, 3: 1.0}, block=16)
    assert ledger.weights()[0] == {2: 65535, 3: 65535}
    capped = DevnetLedger(store, 7, dataclasses.replace(PARAMS, max_weight_limit=0.6))
    with refused(ChainFault.WEIGHTS_REJECTED):
        capped.set_weights("v1", {2: 0.7, 3: 0.3}, block=30)


def test_commit_reveal(store: Store) -> None:
    ledger = subnet(store, dataclasses.replace(PARAMS, commit_reveal=True, reveal_period=1))
    weights = {2: 1.0, 3: 0.5}
    with refused(ChainFault.WEIGHTS_REJECTED):
        ledger.set_weights("v0", weights, block=11)
    ledger.commit_weights("v0", commit_digest("v0", weights, b"salt"), block=12)  # epoch 1
    with refused(ChainFault.REVEAL_REJECTED):  # too early: still epoch 1
        ledger.reveal_weights("v0", weights, b"salt", block=15)
    with refused(ChainFault.REVEAL_REJECTED):  # not what was committed
        ledger.reveal_weights("v0", weights, b"pepper", block=21)
    assert ledger.weights() == {}
    ledger.reveal_weights("v0", weights, b"salt", block=21)  # epoch 2
    assert ledger.weights() == {0: {2: 65535, 3: 32768}}
    ledger.commit_weights("v1", commit_digest("v1", weights, b"s"), block=22)
    with refused(ChainFault.REVEAL_REJECTED):  # expired: two epochs later
        ledger.reveal_weights("v1", weights, b"s", block=41)


def test_epoch_pays_by_consensus_and_keeps_what_it_ran(store: Store) -> None:
    ledger = subnet(store)
    ledger.set_weights("v0", {2: 0.6, 3: 0.4}, block=11)
    ledger.set_weights("v1", {3: 0.5, 4: 0.5}, block=11)  # the minority votes for uid 4
    record = ledger.maybe_epoch(20)
    assert record is not None and ledger.maybe_epoch(25) is None  # one per tempo
    graph = ledger.metagraph(20)
    assert graph.neurons[4].incentive == 0 and graph.neurons[2].incentive > 0
    assert graph.neurons[0].dividends > graph.neurons[1].dividends
    rerun = epoch(unpack_inputs(record["inputs"]))
    assert rerun.incentive.tolist() == record["result"]["incentive"]
    assert rerun.dividends.tolist() == record["result"]["dividends"]
    totals = ledger.totals()
    assert sum(t["server"] + t["validator"] for t in totals.values()) == pytest.approx(20.0)
    assert totals["m4"]["server"] == 0 and totals["m2"]["server"] > 0


def test_a_restart_keeps_the_chain(tmp_path: Path) -> None:
    with Store.open(tmp_path / "chain", StoreConfig()) as first:
        ledger = subnet(first)
        ledger.set_weights("v0", {2: 1.0, 3: 1.0}, block=11)
        ledger.serve("m2", "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW")
        ledger.maybe_epoch(20)
        before = (ledger.metagraph(20), ledger.weights(), ledger.epochs(), ledger.totals())
    with Store.open(tmp_path / "chain", StoreConfig()) as again:
        ledger = DevnetLedger(again, 7, PARAMS)
        after = (ledger.metagraph(20), ledger.weights(), ledger.epochs(), ledger.totals())
        assert after == before
        assert after[0].neurons[2].endpoint.startswith("/ip4/")
        assert ledger.maybe_epoch(25) is None  # the epoch clock survived too
        assert np.isclose(sum(n.incentive for n in after[0].neurons), 1.0)


def test_mechanisms_split_the_emission_each_on_its_own_weights(store: Store) -> None:
    params = dataclasses.replace(PARAMS, mechanism_split=(0.3, 0.7))
    ledger = subnet(store, params)
    # Both validators set mechanism 0 (run A) to miners 2 and 3, mechanism 1 (run B) to miner 4.
    for v in ("v0", "v1"):
        ledger.set_weights(v, {2: 1.0, 3: 1.0}, block=11)
        ledger.set_weights(v, {4: 1.0, 2: 0.0001}, block=11, mechid=1)  # its own rate limit
    with refused(ChainFault.RATE_LIMITED):
        ledger.set_weights("v0", {4: 1.0, 2: 1.0}, block=12, mechid=1)
    with refused(ChainFault.MALFORMED):
        ledger.set_weights("v0", {4: 1.0, 2: 1.0}, block=20, mechid=2)
    assert set(ledger.weights(1)[0]) == {2, 4} and set(ledger.weights(0)[0]) == {2, 3}
    before = ledger.totals()
    record = ledger.maybe_epoch(20)
    assert record is not None and len(record["mechanisms"]) == 1
    totals = ledger.totals()
    got = {
        m: totals[m]["server"] - before.get(m, {}).get("server", 0.0) for m in ("m2", "m3", "m4")
    }
    run_a, run_b = got["m2"] + got["m3"], got["m4"]
    assert run_a / (run_a + run_b) == pytest.approx(0.3, abs=0.01)  # m2's 1e-4 on run B: ~0
    # Each mechanism's epoch can be run again from its record.
    again = epoch(unpack_inputs(record["mechanisms"][0]["inputs"]))
    assert np.allclose(again.server_emission, record["mechanisms"][0]["result"]["server_emission"])
    graph = {n.hotkey: n for n in ledger.metagraph(20).neurons}
    assert graph["m4"].emission == pytest.approx(run_b, rel=1e-6)
    with pytest.raises(ValueError):
        Hyperparams(mechanism_split=(0.5, 0.6))
