"""A network whose stages exchange compressed activations as int8 (`compress`, `wire = "int8"`):
real miners train through it over libp2p and the bulk lane, and the validator's audits of every
miner pass (replays re-encode bit for bit)."""

import dataclasses
from pathlib import Path

from node.roles.orchestrator import OrchestratorComponent
from node.roles.validator import ValidatorComponent
from tests.auditing.conftest import StartNode, orchestrator_settings, validator_settings
from tests.auditing.test_audits import role
from tests.mining.kit import SPEC, endpoint, miner_of, wait_for
from verification.verdict import Outcome

INT8 = dataclasses.replace(SPEC, compress=4, wire="int8")


async def test_an_int8_network_trains_and_passes_its_audits(
    start_node: StartNode, audit_data: Path
) -> None:
    settings = {**orchestrator_settings(audit_data), "orchestrator.run": INT8.to_record()}
    orch = await start_node("orch", ["orchestrator"], **settings)
    validator = await start_node(
        "validator",
        ["validator"],
        orch.p2p_addrs,
        **validator_settings(audit_data),
    )
    miner_settings = {"miner.threads": 1, "miner.data_cache": str(audit_data)}
    miners = [
        await start_node(f"m{i}", ["miner"], orch.p2p_addrs, **miner_settings)
        for i in range(INT8.n_stages)
    ]
    component = role(orch, OrchestratorComponent)
    val = role(validator, ValidatorComponent)
    orch_id = endpoint(orch).peer_id
    await wait_for(lambda: orch_id in endpoint(validator).sessions, 30, "validator admitted")
    await val.auditor.tick()  # commits before the run routes anything
    await wait_for(lambda: component.core.run_state().window >= 2, 120, "two windows")
    for miner in miners:
        holding = miner_of(miner).state.holding
        assert holding is not None and holding.wire.dtype == "int8"
    await val.auditor.tick()
    verdicts = {(v.miner, v.window): v for v in val.records.verdicts()}
    for window in (0, 1):
        work = component.core.work_counts(window)
        assert len(work) == INT8.n_stages
        for peer in work:
            v = verdicts[peer, window]
            assert v.outcome is Outcome.PASS, v
    losses = [float(x) for r in component.history.windows() for x in r.get("losses", {}).values()]
    assert len(losses) >= 2 * INT8.batches_per_window, losses
    assert all(0 < x < 10 for x in losses), losses  # finite, near ln(vocab) = 6.2 at the start
