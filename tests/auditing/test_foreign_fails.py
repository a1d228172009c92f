"""Another validator's fail counts only once this validator's own replay agrees.

Validator A (the network's) draws nobody itself; validator B, a second real node, reports a
real fail of a lazy miner and a forged one (validly signed) of an honest miner. A replays both:
the real one counts in its pay book, the forged one is refuted and changes nothing.
"""

import dataclasses

from node.mining import faults
from node.roles.validator import ValidatorComponent
from tests.auditing.conftest import Network, StartNode
from tests.auditing.test_audits import (
    current,
    orchestrator,
    role,
    stage_miner,
    until_window,
    validator,
)
from tests.mining.kit import endpoint, miner_of, wait_for
from verification.sampling import SamplingRule
from verification.verdict import Outcome, Reason, Verdict


async def test_a_foreign_fail_counts_once_replayed_and_a_forged_one_is_refuted(
    network: Network, start_node: StartNode, audit_data: object
) -> None:
    net = network
    a = validator(net)
    a.pay.rule, a.pay.miners_per_window = (
        SamplingRule(floor=0.0, after_screen=0.0),
        0,
    )  # A draws nobody
    b_node = await start_node(
        "validator-b",
        ["validator"],
        net.orchestrator.p2p_addrs,
        **{"validator.audit": False, "validator.threads": 1,
           "validator.data_cache": str(audit_data)},
    )  # fmt: skip
    b = role(b_node, ValidatorComponent)
    orch_id = endpoint(net.orchestrator).peer_id
    for v in (net.validator, b_node):
        await wait_for(lambda v=v: orch_id in endpoint(v).sessions, 30, "validator admitted")
    await a.auditor.tick()

    # An honest window 1, then a lazy one on stage 1 --------------------------------------------
    await until_window(net, 2)
    cheat = stage_miner(net, 1)
    cheat_id = endpoint(cheat).peer_id
    honest_id = endpoint(stage_miner(net, 0)).peer_id
    start = current(net)
    miner_of(cheat).pipeline.behaviour = faults.make("lazy")
    await until_window(net, start + 2)
    miner_of(cheat).pipeline.behaviour = None
    lazy_window = start + 1
    await until_window(net, lazy_window + 2)

    # B: a real fail of the lazy window, and a forged fail of an honest miner's window 1 ----------
    info = await b.auditor.window_info(orch_id, lazy_window)
    real = await b.auditor.audit_miner(orch_id, info, cheat_id)
    assert real is not None and real.outcome is Outcome.FAIL, real
    forged = Verdict(
        Outcome.FAIL, Reason.OUTPUT_MISMATCH, endpoint(b_node).peer_id, honest_id, 1, 0,
        run=real.run, detail="made up",
    )  # fmt: skip
    await b.auditor._record(orch_id, dataclasses.replace(forged, evidence=real.evidence))
    assert len(orchestrator(net).audits.verdicts(1)) == 1  # the desk keeps what it is told

    # A: audits nothing drawn, then checks the fails by replaying them ----------------------------
    await a.auditor.tick()
    assert a.records.verdicts() == []  # nobody drawn
    await a.foreign.check(orch_id)
    mine = {(v.miner, v.window): v for v in a.records.verdicts()}
    assert mine[cheat_id, lazy_window].outcome is Outcome.FAIL
    assert mine[honest_id, 1].outcome is Outcome.PASS
    counters = a.auditor.counters
    assert (counters["foreign_fail_confirmed"], counters["foreign_fail_refuted"]) == (1, 1)
    pay = a.status()["scores"]["standings"]
    assert pay[cheat_id]["incentive"] == 0.0 and pay[cheat_id]["barred_through"] is not None
    assert pay[honest_id]["incentive"] > 0 and pay[honest_id]["barred_through"] is None
    await a.foreign.check(orch_id)  # each fail is checked once
    assert len(a.records.verdicts()) == 2 and counters["foreign_fail_refuted"] == 1
