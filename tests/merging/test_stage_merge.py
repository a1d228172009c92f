"""Stage merges over a real network in one event loop: an orchestrator and two miners per stage
(real libp2p hosts, real LMDB), the tiny model split in two stages."""

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load as load_safetensors

from node.node_service import NodeService
from tests.auditing.conftest import StartNode
from tests.mining.kit import SPEC, endpoint, miner_of, orch_of, wait_for
from training.checkpoint import OPTIMIZER_PREFIX
from training.data.build import build_dataset
from training.digest import tensors_digest
from training.merge.reduce import weighted_mean

SPEC2 = dataclasses.replace(SPEC, n_stages=2, batches_per_window=8, accumulate=2)


@pytest.fixture(scope="module")
def merge_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("merge-data")
    build_dataset(SPEC2.data_config(path))
    return path


async def start_network(start_node: StartNode, data: Path, miners: int, **orch: object):
    o = await start_node(
        "orch",
        ["orchestrator"],
        **{
            "orchestrator.run": SPEC2.to_record(),
            "orchestrator.eval_batches": 0,
            "orchestrator.tick_s": 0.05,
            "orchestrator.data_cache": str(data),
            "orchestrator.windows": 3,
            **orch,
        },
    )
    ms = [
        await start_node(f"m{i}", ["miner"], o.p2p_addrs,
                         **{"miner.threads": 1, "miner.data_cache": str(data)})
        for i in range(miners)
    ]  # fmt: skip
    return o, ms


def params(blob: bytes | None) -> dict[str, torch.Tensor]:
    assert blob is not None, "checkpoint not kept"
    return {k: v for k, v in load_safetensors(blob).items() if not k.startswith(OPTIMIZER_PREFIX)}


def moments(blob: bytes | None) -> dict[str, torch.Tensor]:
    assert blob is not None, "checkpoint not kept"
    fields = ("/exp_avg", "/exp_avg_sq")
    return {k: v for k, v in load_safetensors(blob).items() if k.endswith(fields)}


def closed(o: NodeService, window: int) -> dict[str, Any]:
    record = orch_of(o).history.window(window) or {}
    return record if record.get("closed") else {}


async def test_two_miners_per_stage_merge_to_the_exact_weighted_average(
    start_node: StartNode, merge_data: Path
) -> None:
    o, ms = await start_network(start_node, merge_data, 4)
    orch = orch_of(o)
    await wait_for(lambda: bool(closed(o, 0)), 90, "window 0 closed")
    record = closed(o, 0)
    assert sorted(record["versions"]) == ["0", "1"], record
    ids = {endpoint(m).peer_id: m for m in ms}
    assert sorted(record["members"]) == sorted(ids), record["members"]
    for stage in (0, 1):
        peers = sorted(p for p, (s, _) in record["members"].items() if s == stage)
        assert len(peers) == 2
        pre = [params(orch.blobs.get(record["premerge"][p])) for p in peers]
        work = [float(record["work"][p]["backward"]) for p in peers]
        assert all(w > 0 for w in work), work
        expected = {k: weighted_mean([t[k].reshape(-1) for t in pre], work).reshape(pre[0][k].shape)
                    for k in pre[0]}  # fmt: skip
        for p in peers:
            post = params(orch.blobs.get(record["members"][p][1]))
            assert all(torch.equal(post[k], expected[k]) for k in expected)  # exact, fp32
        assert tensors_digest(expected) == record["versions"][str(stage)]
        # The AdamW moments are merged with the parameters (orchestrator.merge.moments).
        pre_m = [moments(orch.blobs.get(record["premerge"][p])) for p in peers]
        assert pre_m[0] and pre_m[0].keys() == pre_m[1].keys()
        assert not all(torch.equal(pre_m[0][k], pre_m[1][k]) for k in pre_m[0])
        mean_m = {k: weighted_mean([t[k].reshape(-1) for t in pre_m], work).reshape(v.shape)
                  for k, v in pre_m[0].items()}  # fmt: skip
        for p in peers:
            post_m = moments(orch.blobs.get(record["members"][p][1]))
            assert post_m.keys() == mean_m.keys()
            assert all(torch.equal(post_m[k], mean_m[k]) for k in mean_m)
        assert not torch.equal(pre[0][next(iter(pre[0]))], pre[1][next(iter(pre[1]))])
    # Window 1's receipts name the merged version of their stage.
    await wait_for(lambda: bool(closed(o, 1)), 90, "window 1 closed")
    for peer in ids:
        stage, _ = record["members"][peer]
        first = min(orch.core.receipts_for(1, peer), key=lambda r: r.seq)
        assert first.weights_version == record["versions"][str(stage)], (peer, stage)
    await wait_for(lambda: orch.status()["done"], 60, "run done")
    # What the next window starts from stays pinned; older windows' checkpoints expire.
    last = closed(o, 2)
    newest = {d for _, d in last["members"].values()} | set(last["weights"].values())
    older = ({d for _, d in record["members"].values()} | set(record["premerge"].values())) - newest
    assert older and newest
    infos = {d: orch.blobs.info(d) for d in older | newest}
    assert all(i is not None and i.pinned for d, i in infos.items() if d in newest)
    assert all(i is not None and not i.pinned for d, i in infos.items() if d in older)
    losses = [w["loss"] for w in orch.status()["history"]]
    assert losses[-1] < losses[0], losses


async def test_late_joiner_and_lying_owner(start_node: StartNode, merge_data: Path) -> None:
    o, ms = await start_network(start_node, merge_data, 4, **{"orchestrator.windows": 100})
    orch = orch_of(o)
    liar = ms[1]
    miner_of(liar).merges._corrupt = True  # the `--fault bad-merge` owner
    await wait_for(lambda: bool(closed(o, 0)), 90, "window 0 closed")
    miner_cfg = {"miner.threads": 1, "miner.data_cache": str(merge_data)}
    late = await start_node("late", ["miner"], o.p2p_addrs, **miner_cfg)
    late_id = endpoint(late).peer_id
    await wait_for(lambda: miner_of(late).state.holding is not None, 60, "late joiner holds")
    # Windows go on until one the late joiner merged in has closed (windows are short: a fixed
    # count could end the run first), then the run ends with the window it is in.
    await wait_for(
        lambda: any(late_id in closed(o, w).get("members", {}) for w in range(1, 100)),
        120,
        "a window closed with the late joiner",
    )
    orch.config.windows = orch.core.run_state().window + 1
    await wait_for(lambda: orch.status()["done"], 120, "run done")
    windows = orch.config.windows
    record0 = closed(o, 0)
    liar_id = endpoint(liar).peer_id
    accused = orch.disputes.accused()
    assert accused.get(liar_id, 0) >= 1, (accused, orch.disputes.disputes())
    assert set(accused) == {liar_id}
    # Honest recomputation kept every member of the liar's stage on the one merged version.
    merged_with_liar = 0
    for record in (closed(o, w) for w in range(windows)):
        for peer, (stage, digest) in record["members"].items():
            version = record["versions"][str(stage)]
            assert tensors_digest(params(orch.blobs.get(digest))) == version, (peer, stage)
            if peer != liar_id and record["members"].get(liar_id, [None])[0] == stage:
                merged_with_liar += 1
    assert merged_with_liar >= 1
    # The late joiner synced a merged checkpoint before work, then merged with its stage.
    joined = [w for w in range(1, windows) if late_id in closed(o, w).get("members", {})]
    assert joined, [closed(o, w).get("members") for w in range(windows)]
    stage = closed(o, joined[0])["members"][late_id][0]
    assigned = miner_of(late).state.assigned
    assert assigned is not None and assigned[1] == stage and assigned[2]
    synced = tensors_digest(params(orch.blobs.get(assigned[2])))
    assert synced in {closed(o, w)["versions"].get(str(stage)) for w in range(joined[0])}
    assert record0["versions"][str(stage)]
    await asyncio.sleep(0)
