"""`orchestrator.wait_for_validators`: the first window waits, with every stage held, until that
many validators follow the run, so a validator that needs time to be admitted (on the chain: its
permit comes with an epoch) still audits the run from its first window."""

import asyncio
from pathlib import Path
from typing import Any

from node.roles.orchestrator import OrchestratorComponent
from node.roles.validator import ValidatorComponent
from tests.auditing.conftest import StartNode, orchestrator_settings, validator_settings
from tests.auditing.test_audits import role
from tests.mining.kit import SPEC, endpoint, wait_for
from verification.verdict import Outcome


async def test_the_first_window_waits_for_its_validators(
    start_node: StartNode, audit_data: Path
) -> None:
    settings = {**orchestrator_settings(audit_data), "orchestrator.wait_for_validators": 1}
    orch = await start_node("orch", ["orchestrator"], **settings)
    validator = await start_node(
        "validator",
        ["validator"],
        orch.p2p_addrs,
        **validator_settings(audit_data),
    )
    for i in range(SPEC.n_stages):
        await start_node(
            f"m{i}", ["miner"], orch.p2p_addrs,
            **{"miner.threads": 1, "miner.data_cache": str(audit_data)},
        )  # fmt: skip
    component = role(orch, OrchestratorComponent)

    def status() -> dict[str, Any]:
        section: dict[str, Any] = orch.status()["orchestrator"]
        return section

    await wait_for(lambda: status()["ready"], 60, "every stage held")
    await asyncio.sleep(1.0)  # a tiny window passes in well under a second once routed
    held = status()
    assert held["waiting_for_validators"] == 1 and held["batches"]["issued"] == 0, held
    assert component.core.run_state().window == 0

    val = role(validator, ValidatorComponent)
    orch_id = endpoint(orch).peer_id
    await wait_for(lambda: orch_id in endpoint(validator).sessions, 30, "validator admitted")
    await val.auditor.tick()  # first contact: commits to windows 0.. before any is routed
    await wait_for(lambda: component.core.run_state().window >= 1, 60, "window 0 closed")
    assert status()["waiting_for_validators"] == 0
    await val.auditor.tick()
    verdicts = {(v.miner, v.window): v for v in val.records.verdicts()}
    miners = component.core.work_counts(0)
    assert miners and all(verdicts[m, 0].outcome is Outcome.PASS for m in miners), verdicts
