"""The chain role on real nodes in one event loop: hotkeys register, serve and set weights
through `DevnetChain` over p2p; Yuma epochs pay by those weights; a forged signature, a replayed
nonce, a hotkey without a permit and a wrong subnet get the chain's error and change nothing."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.chain.devnet_client import DevnetChain
from node.chain.records import ChainError, ChainFault
from node.chain.role import ChainComponent
from node.node_service import NodeService
from p2p.chain_messages import ChainCall, ChainResult, extrinsic_payload
from tests.node_kit import start_local_node
from tests.p2p.endpoint_kit import make_hotkey

NETUID = 3


@dataclasses.dataclass
class Net:
    chain: ChainComponent
    validator: DevnetChain
    miner: DevnetChain
    nodes: list[NodeService]
    hotkeys: list[Any]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    hotkeys = [make_hotkey(tmp_path / "wallets", name) for name in ("chain", "val", "miner")]
    admitted = [h.ss58_address for h in hotkeys]
    tasks: list[asyncio.Task[None]] = []
    settings: dict[str, Any] = {
        "devnet_chain.netuid": NETUID,
        "devnet_chain.block_time_s": 0.05,
        "devnet_chain.stakes": {hotkeys[1].ss58_address: 100.0},
        "devnet_chain.params": {"tempo": 10, "weights_rate_limit": 0, "immunity_period": 100},
    }
    chain_node, task = await start_local_node(
        tmp_path / "chain", ["chain"], hotkeys[0], admitted, **settings
    )
    tasks.append(task)
    nodes = [chain_node]
    for i, name in ((1, "val"), (2, "miner")):
        node, task = await start_local_node(
            tmp_path / name, ["miner"], hotkeys[i], admitted, chain_node.p2p_addrs
        )
        nodes.append(node)
        tasks.append(task)
    chain = next(r for r in chain_node._roles if isinstance(r, ChainComponent))
    peer = chain_node.endpoint.peer_id  # type: ignore[union-attr]
    clients = [DevnetChain(n.endpoint, peer, hotkeys[i + 1]) for i, n in enumerate(nodes[1:])]  # type: ignore[arg-type]
    try:
        yield Net(chain, clients[0], clients[1], nodes, hotkeys)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def next_epoch(client: DevnetChain, after: int) -> None:
    while True:
        epochs = await client._view(NETUID, "epochs")
        if epochs[1] and epochs[1][-1]["block"] > after:
            return
        await asyncio.sleep(0.05)


async def test_register_serve_set_weights_and_get_paid(net: Net) -> None:
    assert await net.validator.register(NETUID) == 0
    assert await net.miner.register(NETUID) == 1
    with pytest.raises(ChainError, match=ChainFault.ALREADY_REGISTERED.value):
        await net.miner.register(NETUID)
    addr = net.nodes[2].p2p_addrs[0]
    await net.miner.serve(NETUID, addr)
    await next_epoch(net.validator, await net.validator.block())
    graph = await net.validator.metagraph(NETUID)
    assert [n.validator_permit for n in graph.neurons] == [True, False]
    assert graph.neurons[1].endpoint == addr and graph.neurons[0].stake == 100.0
    with pytest.raises(ChainError, match=ChainFault.WEIGHTS_REJECTED.value):
        await net.miner.set_weights(NETUID, {0: 1.0})  # no permit
    block = await net.validator.set_weights(NETUID, {1: 1.0})
    assert await net.validator.weights(NETUID) == {0: {1: 65535}}
    await next_epoch(net.validator, block)
    graph = await net.miner.metagraph(NETUID)
    assert graph.neurons[1].incentive == pytest.approx(1.0)
    assert graph.neurons[1].emission > 0 and graph.neurons[0].dividends == pytest.approx(1.0)
    assert net.chain.status()["uids"] == 2


async def test_forged_replayed_and_misdirected_extrinsics_change_nothing(net: Net) -> None:
    await net.validator.register(NETUID)
    await net.miner.register(NETUID)
    endpoint = net.nodes[2].endpoint
    assert endpoint is not None
    val, miner = net.hotkeys[1], net.hotkeys[2]
    args = {"endpoint": "/ip4/6.6.6.6/tcp/1"}

    async def send(hotkey: str, signer: Any, nonce: int, netuid: int = NETUID) -> ChainResult:
        payload = extrinsic_payload(netuid, "serve", args, hotkey, nonce)
        msg = ChainCall(netuid=netuid, call="serve", args=args, hotkey=hotkey, nonce=nonce,
                        signature=bytes(signer.sign(payload)))  # fmt: skip
        reply = await endpoint.request(net.chain.ctx.endpoint.peer_id, msg)
        assert isinstance(reply, ChainResult)
        return reply

    forged = await send(val.ss58_address, miner, 1)  # the miner signs as the validator
    assert (forged.ok, forged.fault) == (False, "bad_signature")
    wrong_net = await send(miner.ss58_address, miner, 2, netuid=NETUID + 1)
    assert (wrong_net.ok, wrong_net.fault) == (False, "wrong_subnet")
    assert (await send(miner.ss58_address, miner, 10**18)).ok
    replayed = await send(miner.ss58_address, miner, 10**18)
    assert (replayed.ok, replayed.fault) == (False, "bad_nonce")
    graph = await net.miner.metagraph(NETUID)
    assert graph.neurons[0].endpoint == "" and graph.neurons[1].endpoint == args["endpoint"]
    counters = net.chain.status()["counters"]
    assert counters["serve/bad_signature"] == 1 and counters["serve/bad_nonce"] == 1


async def test_metagraph_command_shows_the_chain(
    net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from node.chain import metagraph_cmd

    await net.validator.register(NETUID)
    await net.miner.register(NETUID)
    block, neurons = await asyncio.to_thread(metagraph_cmd.from_devnet, net.nodes[0].http_url, 5)
    assert [n["hotkey"] for n in neurons] == [h.ss58_address for h in net.hotkeys[1:]]
    table = metagraph_cmd.render(block, neurons).splitlines()
    assert table[1].split()[:3] == ["UID", "STAKE", "VPERMIT"] and len(table) == 4
    assert table[2].split()[0] == "0" and net.hotkeys[1].ss58_address in table[2]

    def args(**kw: object) -> argparse.Namespace:
        base = {"url": None, "network": None, "netuid": 9, "json": False, "timeout": 2.0}
        return argparse.Namespace(**{**base, **kw})

    assert metagraph_cmd.run(args()) == 2  # neither a URL nor a network
    closed = await asyncio.to_thread(metagraph_cmd.run, args(network="ws://127.0.0.1:1"))
    assert closed == 1 and "chain_unavailable" in capsys.readouterr().err
