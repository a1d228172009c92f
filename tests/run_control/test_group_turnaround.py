"""A lockstep group's successor starts on the group's last receipt, not on a timer: stage 0 sends
the receipt that finishes a route at once, and the route it finishes wakes the orchestrator."""

from pathlib import Path

from tests.auditing.conftest import StartNode, orchestrator_settings
from tests.mining.kit import SPEC, orch_of, wait_for

SLOW_TIMERS_S = 60.0


async def test_next_group_starts_without_waiting_for_a_tick_or_a_flush(
    start_node: StartNode, audit_data: Path
) -> None:
    assert SPEC.batches_per_window // SPEC.accumulate >= 2, "the window needs two groups"
    o = await start_node("orch", ["orchestrator"], **orchestrator_settings(audit_data))
    for i in range(SPEC.n_stages):
        await start_node(
            f"m{i}",
            ["miner"],
            o.p2p_addrs,
            **{
                "miner.threads": 1,
                "miner.data_cache": str(audit_data),
                "miner.receipt_flush_s": SLOW_TIMERS_S,
            },
        )
    orch = orch_of(o)
    await wait_for(lambda: orch.core.run_state().issued > 0, 60, "the first group routed")
    orch.config.tick_s = SLOW_TIMERS_S  # from here on only a finished route wakes the loop
    state = orch.core.run_state()
    assert state.window == 0 and state.issued == SPEC.accumulate  # one group at a time
    await wait_for(
        lambda: orch.core.run_state().completed == SPEC.batches_per_window,
        SLOW_TIMERS_S / 2,
        "window 0's groups, each started on the one before",
    )
