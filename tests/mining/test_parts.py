"""The miner's parts alone: config checks, the compute worker, receipt batching, retention."""

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import blake3
import pytest

from node.config import load_node_config
from node.config_loader import ConfigError
from node.mining.receipts import ReceiptSender
from node.mining.retention import RetainedUnit, Retention
from node.mining.worker import ComputeWorker
from node.roles.miner import MinerConfig
from node.service import run_service
from p2p.admission import PeerSession
from p2p.memory_transport import MemoryNetwork
from p2p.messages import Ack, Message, Receipt, ReceiptBatch
from p2p.refusals import Reason, Refused
from p2p.statements import open_statement
from store import BlobStore, Store, StoreConfig
from tests.mining.kit import wait_for
from tests.p2p.endpoint_kit import RUN, allow, make_hotkey, make_node


@pytest.mark.parametrize(
    "bad",
    [
        {"max_inflight": 0},
        {"threads": -1},
        {"receipt_batch": 101},
        {"receipt_flush_s": 0.0},
        {"retention_s": float("nan")},
        {"device": "gpu0"},
        {"capacity": 0.0},
    ],
)
def test_miner_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MinerConfig(**bad)  # type: ignore[arg-type]


def test_miner_config_loads_from_flags() -> None:
    cfg = load_node_config(
        None, {"node.roles": ["miner"], "miner.device": "cuda:1", "miner.max_inflight": 3}
    )
    assert cfg.miner.device == "cuda:1" and cfg.miner.max_inflight == 3
    with pytest.raises(ConfigError):
        load_node_config(None, {"node.roles": ["miner"], "miner.max_inflight": "many"})


async def test_worker_runs_jobs_in_order_and_survives_failures() -> None:
    worker = ComputeWorker(threads=1, max_queue=4)
    task = asyncio.create_task(run_service(worker))
    done: list[int] = []

    def boom() -> None:
        raise RuntimeError("bad input")

    futures = [worker.submit(partial(done.append, i)) for i in range(2)]
    failing = worker.submit(boom)
    futures.append(worker.submit(partial(done.append, 2)))

    def nothing() -> None:
        return None

    with pytest.raises(asyncio.QueueFull):
        for _ in range(4):
            worker.submit(nothing)
    with pytest.raises(RuntimeError):
        await failing
    await asyncio.gather(*futures)
    await worker.idle()
    assert done == [0, 1, 2] and not worker.busy
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _receipt(batch: int) -> Receipt:
    return Receipt(
        window=0,
        batch=batch,
        stage=1,
        direction="forward",
        input_digest=bytes(32),
        output_digest=bytes(32),
        weights_version="v",
    )


@dataclass
class _Inbox:
    """The orchestrator's side of a receipt link: batches received, or refused while `refuse`."""

    got: list[int] = field(default_factory=list)
    refuse: bool = False


def _receipt_link(
    tmp_path: Path, counters: Counter[str], **limits: Any
) -> tuple[ReceiptSender, _Inbox]:
    network = MemoryNetwork()
    hot = [make_hotkey(tmp_path, f"r{i}") for i in range(2)]
    policy = allow(*hot)
    miner = make_node(network, hot[0], policy)
    orch = make_node(network, hot[1], policy, roles=("orchestrator",))
    inbox = _Inbox()

    async def on_batch(msg: ReceiptBatch, peer: PeerSession) -> Message:
        if inbox.refuse:
            raise Refused(Reason.OVER_CAPACITY, "busy")
        for head in msg.receipts:
            inbox.got.append(open_statement(head, Receipt, run=RUN, signer=peer.peer_id)[0].batch)
        return Ack()

    orch.endpoint.register(ReceiptBatch, on_batch)
    sender = ReceiptSender(miner.endpoint, lambda: orch.key.peer_id, counters, **limits)
    return sender, inbox


async def test_receipts_are_kept_while_the_orchestrator_is_away(tmp_path: Path) -> None:
    counters: Counter[str] = Counter()
    sender, inbox = _receipt_link(
        tmp_path, counters, flush_s=0.01, batch=4, max_queued=5, timeout_s=1.0
    )
    inbox.refuse = True
    for batch in range(7):
        sender.add(_receipt(batch))
    assert not await sender.flush()
    assert sender.queued == 5 and counters["receipts_dropped"] == 2
    inbox.refuse = False
    assert await sender.flush()
    assert inbox.got == [2, 3, 4, 5, 6] and sender.queued == 0


async def test_receipts_go_out_when_asked_but_not_while_backing_off(tmp_path: Path) -> None:
    counters: Counter[str] = Counter()
    sender, inbox = _receipt_link(
        tmp_path, counters, flush_s=60.0, batch=32, max_queued=100, timeout_s=1.0
    )
    task = asyncio.create_task(run_service(sender))
    try:
        sender.add(_receipt(0))
        sender.flush_soon()  # long before the 60 s flush and the 32-receipt batch
        await wait_for(lambda: inbox.got == [0], 5.0, "the receipt sent at once")
        inbox.refuse = True
        sender.add(_receipt(1))
        sender.flush_soon()
        await wait_for(lambda: counters["receipt_batches_failed"] == 1, 5.0, "a failed batch")
        for batch in (2, 3):  # backing off: asking again does not hammer the orchestrator
            sender.add(_receipt(batch))
            sender.flush_soon()
            await asyncio.sleep(0.1)
        assert counters["receipt_batches_failed"] == 1 and sender.queued == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_retention_keeps_units_and_forgets_them_in_time(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store", StoreConfig(sync=False, map_size_mib=64)) as store:
        counters: Counter[str] = Counter()
        seconds: defaultdict[str, float] = defaultdict(float)
        retention = Retention(store, RUN, counters, seconds, retention_s=60.0)
        unit = RetainedUnit(
            window=0,
            batch=1,
            stage=2,
            direction="backward",
            route="r1",
            inputs=b"gradient in" * 100,
            outputs=b"",
            input_digest=b"i" * 32,
            output_digest=blake3.blake3(b"").digest(),
            weights_version="v0",
        )
        retention.add(unit)
        await retention.flush()
        row = retention.lookup(0, 1, 2, "backward")["r1"]
        blobs = BlobStore(store)
        assert blobs.get(row["input"]) == b"gradient in" * 100 and row["output"] == ""
        assert retention.sha256_of(b"i" * 32) == row["input"]
        assert retention.gc() == 0 and retention.lookup(0, 1, 2, "backward", "r1")
        assert retention.gc(now=row["expires_ms"] / 1000 + 1) == 1
        assert retention.lookup(0, 1, 2, "backward") == {} and blobs.count() == 0
        assert retention.sha256_of(b"i" * 32) is None and store.stats()["entries"]["mining"] == 0
        assert counters["retained_units"] == 1 and seconds["retention"] > 0


async def test_retention_evicts_past_its_budget_without_waiting_for_its_gc(
    tmp_path: Path,
) -> None:
    """A tiny-model miner filled a 512 MiB map in two minutes: its retention evicted only at its
    minute GC. Now the run loop evicts as soon as the blobs pass the budget."""
    with Store.open(tmp_path / "store", StoreConfig(sync=False, map_size_mib=64)) as store:
        counters: Counter[str] = Counter()
        retention = Retention(
            store, RUN, counters, defaultdict(float), retention_s=3600.0, max_bytes=40_000,
            flush_s=0.01, gc_interval_s=3600.0,
        )  # fmt: skip
        runner = asyncio.create_task(run_service(retention))
        try:
            for batch in range(20):
                retention.add(
                    RetainedUnit(
                        window=0, batch=batch, stage=0, direction="forward", route=f"r{batch}",
                        inputs=bytes([batch]) * 10_000, outputs=b"",
                        input_digest=bytes([batch]) * 32,
                        output_digest=blake3.blake3(b"").digest(), weights_version="v0",
                    )
                )  # fmt: skip
                await asyncio.sleep(0.03)
            blobs = BlobStore(store)
            assert blobs.total_bytes() <= 40_000 and counters["retention_evicted"] >= 16
            assert retention.sha256_of(bytes([19]) * 32) is not None  # the newest are kept
            assert retention.lookup(0, 19, 0, "forward")
            # the rows of evicted units go with their bytes (before: kept until their expiry)
            assert retention.lookup(0, 0, 0, "forward") == {}
            assert retention.sha256_of(bytes([0]) * 32) is None
            assert counters["retention_rows_evicted"] >= 2 * 16
            assert store.stats()["entries"]["mining"] <= 4 * 4  # row, digest map and 2 expiries
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
