"""Three real nodes in one loop: /healthz, /status, /peers, /metrics and JSON errors."""

import asyncio
import json

import aiohttp

from tests.node.conftest import StartNode


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def test_three_nodes_status_peers_metrics(start_node: StartNode) -> None:
    orch = await start_node("orch", ["orchestrator"])
    miner = await start_node("miner", ["miner", "validator"], orch.p2p_addrs)
    third = await start_node("third", ["miner"], orch.p2p_addrs)
    nodes = [orch, miner, third]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for _ in range(100):
            docs = [json.loads((await get(session, f"{n.http_url}/status"))[1]) for n in nodes]
            if all(len(d["connected_peers"]) == 2 for d in docs):
                break
            await asyncio.sleep(0.2)
        ids = {d["peer_id"] for d in docs}
        assert len(ids) == 3
        for doc in docs:
            assert set(doc["connected_peers"]) == ids - {doc["peer_id"]}
            assert doc["listen_addrs"] and doc["listen_addrs"][0].endswith(doc["peer_id"])
            assert doc["store"]["schema_version"] >= 1 and doc["uptime_s"] >= 0
        assert docs[1]["roles"] == ["miner", "validator"]
        assert docs[1]["miner"]["capacity"] == 1.0 and docs[1]["validator"]["weights"] is None
        assert docs[0]["orchestrator"]["run_id"] == "devnet"

        status, body = await get(session, f"{miner.http_url}/healthz")
        assert status == 200 and json.loads(body) == {"ok": True}

        await asyncio.sleep(1.2)  # the peer book writes its first records on its next tick
        status, body = await get(session, f"{orch.http_url}/peers")
        peers = json.loads(body)
        assert status == 200
        assert {p["peer_id"] for p in peers["connected"]} == ids - {docs[0]["peer_id"]}
        assert {p["peer_id"] for p in peers["known"]} == ids - {docs[0]["peer_id"]}
        run = docs[0]["orchestrator"]
        assert (run["window"], run["phase"], run["spec"]["model"]) == (0, "train", "small")
        assert run["stages"][0]["miners"] == []  # unbound peers are not admitted as miners

        status, text = await get(session, f"{orch.http_url}/metrics")
        assert status == 200
        assert "tessera_peers_connected 2.0" in text
        assert 'tessera_build_info{peer_id="' in text
        assert 'tessera_http_requests_total{code="200",route="/status"}' in text
        assert 'tessera_p2p_events_total{event="peerx_ok"}' in text


async def test_errors_are_json(start_node: StartNode) -> None:
    node = await start_node("solo", ["validator"])
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{node.http_url}/nope") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "not_found"
        async with session.post(f"{node.http_url}/status") as response:
            assert response.status == 405
            assert (await response.json())["error"] == "method_not_allowed"
        async with session.get(f"{node.http_url}/metrics") as response:
            text = await response.text()
    assert 'tessera_http_requests_total{code="404",route="unmatched"}' in text
    assert 'code="405"' in text
