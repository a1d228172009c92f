"""Three real miner nodes run the pipeline: every result matches local training bitwise."""

import asyncio
import dataclasses
import math
from pathlib import Path

import aiohttp
import blake3
import pytest

from node.blob_server import fetch_blob
from p2p.messages import Ack, WeightsReport, WindowClose
from p2p.refusals import Reason, Refused
from store import BlobStore
from tests.mining.conftest import StartNode
from tests.mining.kit import (
    SPEC,
    Orchestrator,
    Reference,
    endpoint,
    load_checkpoint,
    miner_of,
    state_of,
    wait_admitted,
    wait_for,
)
from training.data.dataset import Dataset

STAGES = SPEC.n_stages


async def test_pipeline_window_matches_local_training(
    start_node: StartNode, hotkeys, dataset: Dataset, data_cache: Path, tmp_path: Path
) -> None:
    orch_node = await start_node("orch", ["orchestrator"], hotkey=hotkeys[0])
    overrides = {"miner.threads": 1, "miner.data_cache": str(data_cache)}
    miners = [
        await start_node(
            f"m{i}", ["miner"], orch_node.p2p_addrs, hotkey=hotkeys[i + 1], **overrides
        )
        for i in range(STAGES)
    ]
    await wait_admitted([orch_node, *miners], STAGES)
    orch = Orchestrator(orch_node)
    ids = [endpoint(m).peer_id for m in miners]
    for stage, miner in enumerate(miners):
        assert isinstance(await orch.assign(miner, stage), Ack)
    holdings = [state_of(m).holding for m in miners]

    reference = Reference.build(SPEC)
    window0 = [(0, b) for b in range(SPEC.batches_per_window)]
    reference_run = asyncio.to_thread(reference.run, SPEC, dataset, window0)

    for group in ([0, 1], [2, 3]):  # lockstep groups of `accumulate` batches
        for batch in group:
            await orch.work(0, batch, ids)
        await wait_for(
            lambda g=group: all(len(orch.of_batch(0, b)) == 2 * STAGES for b in g),
            what=f"receipts of batches {group}",
        )
    await reference_run

    for window, batch in window0:
        got = orch.of_batch(window, batch)
        for s in range(STAGES - 1):  # what a stage sent is what the next one received
            assert got[s, "forward"].output_digest == got[s + 1, "forward"].input_digest
            assert got[s + 1, "backward"].output_digest == got[s, "backward"].input_digest
        last = got[STAGES - 1, "forward"]
        assert got[STAGES - 1, "backward"].input_digest == last.output_digest
        assert got[0, "backward"].output_digest == blake3.blake3(b"").digest()
        assert last.loss is not None and math.isfinite(last.loss)
        assert last.loss == reference.losses[window, batch]  # bitwise
        for s in range(STAGES):
            assert got[s, "forward"].weights_version == reference.versions[window, batch][s]
            assert got[s, "backward"].weights_version == reference.versions[window, batch][s]
            assert got[s, "forward"].route == f"r{window}.{batch}"
    signers = {(r.stage, peer) for peer, r in orch.receipts}
    assert signers == {(s, ids[s]) for s in range(STAGES)}
    first, third = orch.of_batch(0, 0), orch.of_batch(0, 2)
    second = orch.of_batch(0, 1)
    for s in range(STAGES):  # one optimizer step after `accumulate` batches
        assert first[s, "forward"].weights_version == second[s, "forward"].weights_version
        assert first[s, "forward"].weights_version != third[s, "forward"].weights_version

    # retention: each unit's tensors are in the miner's blob store under the receipt's digests
    middle = miner_of(miners[1])
    assert middle.retention is not None
    await middle.retention.flush()
    rows = middle.retention.lookup(0, 2, 1, "forward")
    row = rows["r0.2"]
    assert miners[1].store is not None
    blobs = BlobStore(miners[1].store)
    stored = blobs.get(row["input"])
    assert stored is not None and blake3.blake3(stored).digest() == third[1, "forward"].input_digest
    assert row["output_digest"] == third[1, "forward"].output_digest
    assert middle.retention.sha256_of(third[1, "forward"].output_digest) == row["output"]

    # WindowClose: each stage's checkpoint is fetchable and equals the reference's stage
    reports = [
        await orch.ep.request(ids[s], WindowClose(window=0), timeout=30) for s in range(STAGES)
    ]
    for s, report in enumerate(reports):
        assert isinstance(report, WeightsReport)
        assert (report.window, report.stage) == (0, s)
        assert report.weights_version == SPEC.batches_per_window // SPEC.accumulate
        assert report.backward_passes == SPEC.batches_per_window
        data = await fetch_blob(orch.ep, ids[s], report.digest, timeout=10)
        loaded = load_checkpoint(SPEC, s, data, tmp_path)
        assert loaded.weights_digest() == reference.engines[s].weights_digest()
        assert loaded.weights_version == reference.engines[s].weights_version
        assert state_of(miners[s]).window == 1
    again = await orch.ep.request(ids[1], WindowClose(window=0), timeout=30)
    assert isinstance(again, WeightsReport) and isinstance(reports[1], WeightsReport)
    assert dataclasses.replace(again, re=0) == dataclasses.replace(reports[1], re=0)  # same report

    # re-sending the current assignment (as a restarted orchestrator does) is a no-op
    for s, miner in enumerate(miners):
        report = reports[s]
        assert isinstance(report, WeightsReport)
        assert isinstance(await orch.assign(miner, s, report.digest, window=1), Ack)
        assert state_of(miner).holding is holdings[s]
        assert state_of(miner).counters["assign_repeated"] == 1

    # the closed window is closed; the next one trains on, still matching
    with pytest.raises(Refused) as err:
        await orch.work(0, 3, ids)
    assert err.value.reason is Reason.WRONG_WINDOW
    window1 = [(1, 0), (1, 1)]
    for _, batch in window1:  # one after the other, so (1, 1) is stage 2's last loss
        await orch.work(1, batch, ids)
        await wait_for(
            lambda b=batch: len(orch.of_batch(1, b)) == 2 * STAGES, what=f"batch {batch}"
        )
    await reference_run_in_thread(reference, dataset, window1)
    await wait_for(
        lambda: all(len(orch.of_batch(1, b)) == 2 * STAGES for _, b in window1),
        what="window 1 receipts",
    )
    for key in window1:
        assert orch.of_batch(*key)[STAGES - 1, "forward"].loss == reference.losses[key]
    await wait_for(lambda: all(miner_of(m).receipts.queued == 0 for m in miners))

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{miners[2].http_url}/status") as response:
            status = (await response.json())["miner"]
        async with session.get(f"{miners[2].http_url}/metrics") as response:
            metrics = await response.text()
    assert status["stage"] == 2 and status["window"] == 1 and status["model"] == "tiny"
    assert status["forward"] == status["backward"] == 6
    assert status["optimizer_steps"] == 3 and status["inflight"] == 0
    assert status["last_loss"] == reference.losses[1, 1]
    assert 'tessera_miner_events_total{event="forward"} 6.0' in metrics
    assert 'tessera_miner{field="optimizer_steps"} 3.0' in metrics


async def reference_run_in_thread(
    reference: Reference, dataset: Dataset, batches: list[tuple[int, int]]
) -> None:
    await asyncio.to_thread(reference.run, SPEC, dataset, batches)
