"""An orchestrator whose store is small keeps training: checkpoints beyond the store's blob
budget are evicted oldest first at each window close, and the receipts and routes of windows
older than `orchestrator.record_windows` are deleted, so its LMDB map never fills."""

from node.roles.orchestrator import OrchestratorComponent
from store import BlobStore
from tests.auditing.conftest import StartNode, orchestrator_settings
from tests.auditing.test_audits import role
from tests.mining.kit import SPEC, wait_for

MAP_MIB = 24  # a window's three stage checkpoints (with AdamW moments) take about 3 MiB


async def test_small_store_evicts_old_checkpoints_and_keeps_running(
    start_node: StartNode, audit_data
) -> None:
    settings = {
        **orchestrator_settings(audit_data),
        "store.map_size_mib": MAP_MIB,
        "orchestrator.record_windows": 4,
    }
    orch = await start_node("orch", ["orchestrator"], **settings)
    for i in range(SPEC.n_stages):
        await start_node(
            f"m{i}",
            ["miner"],
            orch.p2p_addrs,
            **{"miner.threads": 1, "miner.data_cache": str(audit_data)},
        )
    component = role(orch, OrchestratorComponent)
    assert orch.store is not None
    blobs = BlobStore(orch.store)
    budget = orch.store.config.blob_budget_bytes
    peak = 0

    def window() -> int:
        nonlocal peak
        peak = max(peak, blobs.total_bytes())
        return component.core.run_state().window

    await wait_for(lambda: window() >= 14, 240, "window 14")  # ~42 MiB of checkpoints in all
    assert component._gc_counters["blobs_evicted"] > 0
    assert component._gc_counters["store_full"] == 0
    one_window = 4 * 2**20
    assert peak <= budget + one_window, (peak, budget)
    stats = orch.status()["store"]
    assert stats["used"] < stats["map_size"] and stats["blob_budget"] == budget
    assert component._gc_counters["windows_pruned"] >= 8
    now = component.core.run_state().window
    assert component.core.receipts_for_batch(0, 0) == []  # window 0's records are gone
    assert component.core.batch(0, 0) is None
    assert component.core.receipts_for_batch(now - 1, 0)  # the newest windows' are kept
    records = [r for r in component.history.windows() if r.get("closed")]
    assert [r["window"] for r in records[:3]] == [0, 1, 2]  # their summaries stay
    old, new = records[0], records[-1]
    assert "members" not in old and "premerge" not in old and old["losses"] and old["work"]
    assert "members" in new and "premerge" in new  # what audits of recent windows read
    assert component._gc_counters["history_compacted"] >= 8
    assert sum(old["merged"].values()) == SPEC.n_stages  # one miner per stage went on
    assert orch.status()["orchestrator"]["history"][0]["merged"] == old["merged"]
    latest = component.history.latest_weights()
    assert len(latest) == SPEC.n_stages and all(blobs.has(d) for d in latest.values())
