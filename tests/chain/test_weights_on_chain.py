"""Nodes linked to a devnet chain (`[chain] network = "devnet"`): they register and serve their
multiaddr by themselves, and a validator's weight setter turns scores per peer into weights per
uid on the chain, which the next epoch pays out; a validator with nothing scored sets nothing."""

import asyncio
from pathlib import Path
from typing import Any

from node.chain.role import ChainComponent
from node.chain.weight_setter import WeightPolicy, WeightSetter
from node.roles.validator import ValidatorComponent
from tests.chain.kit import link_settings
from tests.mining.kit import wait_for
from tests.node_kit import start_local_node
from tests.p2p.endpoint_kit import make_hotkey

NETUID = 4


async def test_nodes_register_serve_and_validators_set_weights(tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    hotkeys = [make_hotkey(wallets, name) for name in ("chain", "val", "miner")]
    admitted = [h.ss58_address for h in hotkeys]
    chain_settings: dict[str, Any] = {
        "devnet_chain.netuid": NETUID, "devnet_chain.block_time_s": 0.05,
        "devnet_chain.stakes": {hotkeys[1].ss58_address: 50.0},
        "devnet_chain.params": {"tempo": 10, "weights_rate_limit": 0},
    }  # fmt: skip
    tasks: list[asyncio.Task[None]] = []
    try:
        chain_node, task = await start_local_node(
            tmp_path / "chain", ["chain"], hotkeys[0], admitted, **chain_settings
        )
        tasks.append(task)
        boot = chain_node.p2p_addrs
        val, task = await start_local_node(
            tmp_path / "val", ["validator"], hotkeys[1], admitted, boot,
            **link_settings(wallets, "val", NETUID),
            **{"validator.audit": False, "validator.tick_s": 0.1},
        )  # fmt: skip
        tasks.append(task)
        miner, task = await start_local_node(
            tmp_path / "miner", ["miner"], hotkeys[2], admitted, boot,
            **link_settings(wallets, "miner", NETUID),
        )  # fmt: skip
        tasks.append(task)
        chain = next(r for r in chain_node._roles if isinstance(r, ChainComponent))

        def graph() -> Any:
            return chain.ledger.metagraph(chain.block())

        def served() -> bool:
            return len(graph().neurons) == 2 and all(n.endpoint for n in graph().neurons)

        await wait_for(served, 30, "both nodes registered and served")
        by_hotkey = {n.hotkey: n for n in graph().neurons}
        assert by_hotkey[hotkeys[2].ss58_address].endpoint == miner.p2p_addrs[0]
        component = next(r for r in val._roles if isinstance(r, ValidatorComponent))
        assert component.weights is not None
        await wait_for(lambda: component.weights.counters["nothing_to_set"] > 0, 30, "a tick")
        assert chain.ledger.weights() == {}
        assert val.status()["chain"]["uid"] == by_hotkey[hotkeys[1].ss58_address].uid

        val_uid = by_hotkey[hotkeys[1].ss58_address].uid
        await wait_for(lambda: graph().neurons[val_uid].validator_permit, 30, "a permit")
        miner_peer = miner.endpoint.peer_id  # type: ignore[union-attr]
        setter = WeightSetter(
            component.ctx.chain,  # type: ignore[arg-type]
            lambda: {miner_peer: 7.0, "unknown-peer": 3.0},
            component._hotkey_of,
            WeightPolicy(interval_blocks=1),
        )
        assert await setter.tick() == "ok"
        miner_uid = by_hotkey[hotkeys[2].ss58_address].uid
        assert chain.ledger.weights() == {val_uid: {miner_uid: 65535}}
        await wait_for(lambda: graph().neurons[miner_uid].incentive > 0.99, 30, "incentive paid")
        assert graph().neurons[val_uid].dividends > 0.99
        assert chain.ledger.totals()[hotkeys[2].ss58_address]["server"] > 0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_a_bittensor_network_gets_the_sdk_client_and_an_axon_counts_as_served(
    tmp_path: Path,
) -> None:
    from node.chain.bittensor_chain import BittensorChain
    from node.chain.config import ChainConfig
    from node.chain.link import ChainLink, _same

    hotkey = make_hotkey(tmp_path, "v")
    config = ChainConfig(network="test", netuid=9, wallet_name="v")
    link = ChainLink(config, None, hotkey, lambda: [])  # type: ignore[arg-type]
    assert isinstance(link.client, BittensorChain) and link.client.hotkey == hotkey.ss58_address
    addr = "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWabc"
    assert _same(addr, addr) and _same("/ip4/1.2.3.4/tcp/4001", addr)
    assert not _same("/ip4/1.2.3.4/tcp/4002", addr) and not _same(None, addr)
