"""The dashboard's routes and live feed on a real node: one snapshot per interval shared by every
client, a bounded number of streams, headers that keep the page to its own assets, and a node
that stops at once with streams open."""

import asyncio
import json

import aiohttp

from node.dashboard.feed import DashboardFeed
from node.node_service import NodeService
from tests.mining.kit import endpoint, wait_for
from tests.node.conftest import StartNode

FAST = {"http.dashboard.interval_s": 0.2, "http.dashboard.max_clients": 3}


def feed_of(node: NodeService) -> DashboardFeed:
    assert node.dashboard is not None
    return node.dashboard


async def snapshots(response: aiohttp.ClientResponse, n: int) -> list[bytes]:
    """The data of the first `n` `snapshot` events of an open event stream."""
    found: list[bytes] = []
    event = None
    async for raw in response.content:
        line = raw.rstrip(b"\n")
        if line.startswith(b"event: "):
            event = line.removeprefix(b"event: ")
        elif line.startswith(b"data: ") and event == b"snapshot":
            found.append(line.removeprefix(b"data: "))
            if len(found) == n:
                break
    return found


async def test_clients_share_one_snapshot_per_interval(start_node: StartNode) -> None:
    orch = await start_node("orch", ["orchestrator"], **FAST)
    feed = feed_of(orch)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        streams = [await session.get(f"{orch.http_url}/events") for _ in range(3)]
        assert all(r.status == 200 for r in streams)
        assert streams[0].headers["Content-Type"] == "text/event-stream"
        assert feed.clients == 3

        refused = await session.get(f"{orch.http_url}/events")
        assert refused.status == 503
        assert (await refused.json())["error"] == "too_many_clients"

        before = feed.counters["snapshots"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        received = await asyncio.gather(*(snapshots(r, 6) for r in streams))
        elapsed = loop.time() - started
        built = feed.counters["snapshots"] - before
        # Three clients took 6 snapshots each; the feed built about one per interval, not per
        # client (3 x 6 = 18 if every client had its own).
        assert built <= elapsed / 0.2 + 2, (built, elapsed)
        tails = [r[-1] for r in received]
        assert tails[0] == tails[1] or tails[1] == tails[2]  # the same bytes, not rebuilt
        doc = json.loads(received[0][-1])
        assert doc["node"]["peer_id"] == endpoint(orch).peer_id
        assert doc["node"]["roles"] == ["orchestrator"]
        assert doc["run"]["window"] == 0 and doc["stages"]["stages"][0]["miners"] == []
        assert str(orch.home) not in received[0][-1].decode()  # no paths on the page

        for r in streams:
            r.close()
        await wait_for(lambda: feed.clients == 0, 5, "streams closed")
        assert (await session.get(f"{orch.http_url}/events")).status == 200


async def test_page_assets_headers_and_errors(start_node: StartNode) -> None:
    node = await start_node("solo", ["validator"], **FAST)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        page = await session.get(f"{node.http_url}/")
        html = await page.text()
        assert page.status == 200 and page.content_type == "text/html"
        assert '<script src="/dashboard/app.js"' in html and 'id="audits"' in html
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        for name, kind in [("app.js", "text/javascript"), ("style.css", "text/css")]:
            asset = await session.get(f"{node.http_url}/dashboard/{name}")
            assert asset.status == 200 and asset.content_type == kind
        missing = await session.get(f"{node.http_url}/dashboard/..%2Fview.py")
        assert missing.status == 404 and (await missing.json())["error"] == "not_found"
        one = await session.get(f"{node.http_url}/dashboard.json")
        doc = await one.json()
        assert set(doc) >= {"node", "audits", "pay", "peers"} and "run" not in doc


async def test_node_stops_at_once_with_streams_open(start_node: StartNode) -> None:
    node = await start_node("orch", ["orchestrator"], **FAST)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        stream = await session.get(f"{node.http_url}/events")
        assert len(await snapshots(stream, 1)) == 1
        task = next(t for t in asyncio.all_tasks() if t.get_name() == f"node/{node.home.name}")
        loop = asyncio.get_running_loop()
        started = loop.time()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert loop.time() - started < 10  # not aiohttp's 60 s wait for open handlers
        await asyncio.wait_for(stream.content.read(), 5)  # the stream was ended, not left open
        assert stream.content.at_eof()
