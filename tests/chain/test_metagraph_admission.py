"""Metagraph admission (`admission.mode = "metagraph"`): a node admits the hotkeys registered on
its subnet, finds them through the multiaddrs they served on the chain (no bootstrap to them),
refuses an unregistered hotkey with `not_registered`, and drops a peer that left the subnet."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from node.chain.config import ChainConfig
from node.chain.link import ChainLink
from node.chain.records import Metagraph, Neuron
from p2p.admission import RegisteredHotkeys
from p2p.memory_transport import MemoryNetwork
from p2p.refusals import Reason, Refused
from tests.chain.kit import link_settings
from tests.mining.kit import wait_for
from tests.node_kit import start_local_node
from tests.p2p.endpoint_kit import allow, make_hotkey, make_node

NETUID = 5


def neuron(uid: int, hotkey: str, *, permit: bool = False) -> Neuron:
    return Neuron(uid=uid, hotkey=hotkey, coldkey="", stake=0.0, validator_permit=permit,
                  last_update=0, block_at_registration=0)  # fmt: skip


def test_policy_admits_registered_hotkeys_and_permitted_validators() -> None:
    policy = RegisteredHotkeys(["chain-hk"])
    assert policy.allows("chain-hk", ["chain"]) and not policy.allows("m", ["miner"])
    assert policy.refusal("m", ["miner"]).reason is Reason.NOT_REGISTERED
    policy.update(["m", "v"], ["v"])
    assert policy.allows("m", ["miner"]) and policy.allows("v", ["validator"])
    assert not policy.allows("m", ["validator"])  # registered, but no permit
    assert policy.refusal("m", ["validator"]).reason is Reason.NOT_ALLOWED
    assert not policy.allows(None, ["miner"])


async def test_a_peer_that_left_the_subnet_is_dropped(tmp_path: Path) -> None:
    hotkeys = [make_hotkey(tmp_path, n) for n in ("a", "b", "c")]
    network = MemoryNetwork()
    nodes = [make_node(network, h, allow(*hotkeys)) for h in hotkeys]
    for other in nodes[1:]:
        await nodes[0].endpoint.hello(other.key.peer_id)
    policy = RegisteredHotkeys([])
    link = ChainLink(ChainConfig(), nodes[0].endpoint, hotkeys[0], lambda: [], admission=policy)
    graph = Metagraph(netuid=NETUID, block=1, neurons=(neuron(0, nodes[1].hotkey),))
    assert link.admit_from(graph, policy) == [nodes[2].key.peer_id]
    assert set(nodes[0].endpoint.sessions) == {nodes[1].key.peer_id}


async def test_nodes_find_and_admit_each_other_through_the_chain(tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    hotkeys = [make_hotkey(wallets, n) for n in ("chain", "val", "miner", "stranger")]
    everyone = [h.ss58_address for h in hotkeys]

    chain_settings: dict[str, Any] = {
        "devnet_chain.netuid": NETUID,
        "devnet_chain.block_time_s": 0.05,
    }
    tasks: list[asyncio.Task[None]] = []
    try:
        chain, task = await start_local_node(
            tmp_path / "chain", ["chain"], hotkeys[0], everyone, **chain_settings
        )
        tasks.append(task)
        boot = chain.p2p_addrs
        alone: dict[str, Any] = {
            "p2p.max_peers": 1
        }  # the chain node only: no dials from peer exchange
        miner, task = await start_local_node(
            tmp_path / "miner",
            ["miner"],
            hotkeys[2],
            everyone,
            boot,
            **link_settings(wallets, "miner", NETUID),
            **alone,
        )
        tasks.append(task)
        val, task = await start_local_node(
            tmp_path / "val", ["validator"], hotkeys[1], [hotkeys[0].ss58_address], boot,
            **link_settings(wallets, "val", NETUID), **alone,
            **{"admission.mode": "metagraph", "validator.audit": False},
        )  # fmt: skip
        tasks.append(task)
        stranger, task = await start_local_node(
            tmp_path / "stranger", ["miner"], hotkeys[3], everyone, boot
        )
        tasks.append(task)
        assert val.endpoint is not None and miner.endpoint is not None
        assert stranger.endpoint is not None
        m_id, v_id = miner.endpoint.peer_id, val.endpoint.peer_id
        sessions = val.endpoint.sessions
        await wait_for(lambda: m_id in sessions, 30, "the validator found and admitted the miner")
        # Through the chain's metagraph (peer exchange is off): whichever side read it first
        # dialled, and the other found the session already open.
        dials = [n.status()["chain"]["counters"].get("dialled", 0) for n in (val, miner)]
        assert sum(dials) >= 1, dials
        assert stranger._host is not None
        await stranger._host.connect(val.p2p_addrs[0])
        with pytest.raises(Refused) as refused:
            await stranger.endpoint.hello(v_id, timeout=10)
        assert refused.value.reason is Reason.NOT_REGISTERED
        assert val.endpoint.refusals.counts["not_registered"] >= 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
