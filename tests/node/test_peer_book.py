"""Peer book: durable first/last-seen records, and a full LMDB map that never crashes the node."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.metrics import NodeMetrics
from node.peer_book import PeerBook
from p2p.host import HostConfig, P2PHost
from p2p.identity import NodeKey
from store import MapFullError, Store, StoreConfig


@pytest.fixture
async def connected_hosts() -> AsyncIterator[tuple[P2PHost, P2PHost]]:
    a = P2PHost(NodeKey.generate(), HostConfig())
    b = P2PHost(NodeKey.generate(), HostConfig())
    await a.start()
    await b.start()
    await b.connect(a.listen_addrs[0])
    for _ in range(100):  # identify tells A where B listens shortly after the connection
        if any(p.addrs for p in a.connected_peers()):
            break
        await asyncio.sleep(0.05)
    yield a, b
    await b.stop()
    await a.stop()


def map_full_count(metrics: NodeMetrics) -> float:
    value = metrics.registry.get_sample_value("tessera_store_errors_total", {"reason": "map_full"})
    return value or 0.0


async def test_records_first_and_last_seen(connected_hosts, tmp_path: Path) -> None:
    a, b = connected_hosts
    with Store.open(tmp_path, StoreConfig()) as store:
        book = PeerBook(a, store, NodeMetrics(roles=["miner"], peer_id=a.peer_id))
        book.refresh(now=100.0)
        book.refresh(now=105.0)  # within the touch interval: no write
        book.refresh(now=120.0)
        [record] = book.known()
    assert record["peer_id"] == b.peer_id
    assert record["first_seen"] == 100.0 and record["last_seen"] == 120.0
    assert any(addr.startswith("/ip4/127.0.0.1/tcp/") for addr in record["addrs"])


async def test_full_map_is_counted_and_reads_still_work(connected_hosts, tmp_path: Path) -> None:
    a, _ = connected_hosts
    metrics = NodeMetrics(roles=["orchestrator"], peer_id=a.peer_id)
    with Store.open(tmp_path, StoreConfig(map_size_mib=1)) as store:
        i = 0
        for size in (4000, 400, 40, 1):  # saturate the peers table until small inserts fail
            failures = 0
            while failures < 5:
                i += 1
                try:
                    with store.write() as txn:
                        txn.put("peers", f"0-filler-{i:07d}", b"x" * size)
                    failures = 0
                except MapFullError:
                    failures += 1
        book = PeerBook(a, store, metrics)
        for step in range(10):  # each refresh is due (20 s apart) and must never raise
            book.refresh(now=1000.0 + 20 * step)
        assert map_full_count(metrics) >= 1
        with store.read() as txn:
            assert txn.get("peers", "0-filler-0000001") == b"x" * 4000
