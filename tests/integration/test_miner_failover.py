"""SIGKILL a miner mid-window: a standby takes over its stage and the run finishes."""

from pathlib import Path
from typing import Any

import pytest

from tests.integration.kit import (
    losses,
    running,
    stage_holder,
    tiny_plan,
    wait_for,
)

pytestmark = pytest.mark.integration
WINDOWS = 3
BATCHES = 32


def mid_window(section: dict[str, Any]) -> bool:
    """Window 1 has finished a batch and has routes open (they all pass through every stage)."""
    batches = section.get("batches", {})
    return (
        section.get("window") == 1
        and batches.get("completed", 0) >= 1
        and batches.get("open", 0) >= 1
    )


async def test_killed_miner_is_replaced_by_standby(tmp_path: Path, data_cache: Path) -> None:
    # 3 stages + 1 standby: one miner per stage, so the fourth waits to take over.
    plan = tiny_plan(
        data_cache, windows=WINDOWS, miners=4, sets=["orchestrator.max_miners_per_stage=1"]
    )
    # Windows of 32 batches last seconds, not one: long enough for a status poll to find
    # window 1 under way (at 8 batches a window took under a second on the bulk lane).
    plan.run["batches_per_window"] = BATCHES
    async with running(tmp_path, plan) as net:
        section = await wait_for(
            net,
            mid_window,
            timeout=60,
            what="window 1 under way with routes open",
        )
        assert section["phase"] == "train", section
        victim_id = stage_holder(section, 1)
        assert victim_id is not None, section
        standby_ids = {m["peer_id"] for m in section.get("standby", [])}
        assert len(standby_ids) == 1, section
        victim = net.by_peer_id(victim_id)
        assert victim is not None
        await victim.kill()

        done = await wait_for(net, lambda s: bool(s.get("done")), timeout=75, what="run done")
        history = done["history"]
        assert [w["window"] for w in history] == list(range(WINDOWS)), history
        # Window 1 went on after the kill: its batches finished through the standby (the dead
        # miner's open routes are re-issued after their lease; under heavy CPU contention a
        # route can lapse max_attempts times and be dropped, which the orchestrator may do).
        per_window = BATCHES
        counts = [(w.get("completed", 0), w.get("dropped", 0)) for w in history]
        assert all(c + d == per_window for c, d in counts), counts
        assert counts[1][0] > section["batches"]["completed"], (counts, section["batches"])
        curve = losses(done)
        assert len(curve) == WINDOWS and curve[-1] < curve[0], curve
        # The standby now holds the killed miner's stage and did work for it.
        assert stage_holder(done, 1) in standby_ids, done["stages"]
        standby = standby_ids.pop()
        assert done["work"][standby]["backward"] > 0, done["work"]
        for node in net.nodes:
            if node is not victim:
                assert node.running, f"{node.name} exited with {node.returncode}"
