"""SIGKILL the orchestrator mid-run and restart it on the same home: the run resumes."""

import asyncio
from pathlib import Path

import pytest

from tests.integration.kit import losses, orchestrator_section, running, tiny_plan, wait_for

pytestmark = pytest.mark.integration
WINDOWS = 3


async def test_orchestrator_resumes_run_after_kill(tmp_path: Path, data_cache: Path) -> None:
    plan = tiny_plan(data_cache, windows=WINDOWS, miners=3)
    plan.run["batches_per_window"] = 32  # windows of seconds: a status poll finds window 1
    async with running(tmp_path, plan) as net:
        before = await wait_for(
            net,
            lambda s: s.get("window", 0) >= 1 and s.get("batches", {}).get("completed", 0) >= 1,
            timeout=60,
            what="window 1 under way",
        )
        orchestrator = net.orchestrator
        await orchestrator.kill()
        assert await orchestrator_section(net) is None
        await asyncio.sleep(1.0)
        await orchestrator.restart(timeout=60.0)

        after = await wait_for(  # the spec has its data digest once the run is loaded
            net,
            lambda s: bool(s.get("spec", {}).get("data_digest")),
            timeout=30,
            what="the restarted orchestrator's run",
        )
        assert after["run_id"] == before["run_id"]
        assert after["spec"] == before["spec"]
        assert after["window"] >= before["window"], (before["window"], after["window"])
        kept = after["history"][: len(before["history"])]
        assert [w["window"] for w in kept] == [w["window"] for w in before["history"]]
        assert losses({"history": kept}) == losses(before)

        done = await wait_for(net, lambda s: bool(s.get("done")), timeout=75, what="run done")
        assert [w["window"] for w in done["history"]] == list(range(WINDOWS)), done["history"]
        curve = losses(done)
        assert len(curve) == WINDOWS and curve[-1] < curve[0], curve
        assert all(node.running for node in net.nodes), [n.returncode for n in net.nodes]
