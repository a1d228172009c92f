"""Audits over a real network: honest windows pass, each cheater fails, gaps are inconclusive.

One network serves every case: a fault is switched on in the stage-1 miner's pipeline, kept for a
whole window, and switched off again; the validator's rounds are driven by the test.
"""

import asyncio
from typing import TypeVar

import pytest

from node.mining import faults
from node.mining.retention import blob_for_digest
from node.node_service import NodeService
from node.roles.orchestrator import OrchestratorComponent
from node.roles.validator import ValidatorComponent
from p2p.audit_messages import ReceiptQuery, WindowInfoQuery
from p2p.refusals import Reason, Refused
from store import BlobStore
from tests.auditing.conftest import Network
from tests.mining.kit import SPEC, endpoint, miner_of, wait_for
from verification.sampling import targeted_draw
from verification.scores import Decay, book, incentives
from verification.selection import verify_reveal
from verification.verdict import Outcome, Verdict
from verification.verdict import Reason as VerdictReason

KINDS = ("lazy", "random", "stale", "copycat")


R = TypeVar("R")


def role(node: NodeService, cls: type[R]) -> R:
    return next(r for r in node._roles if isinstance(r, cls))


def orchestrator(net: Network) -> OrchestratorComponent:
    return role(net.orchestrator, OrchestratorComponent)


def validator(net: Network) -> ValidatorComponent:
    return role(net.validator, ValidatorComponent)


def incentives_at(val: ValidatorComponent, now: int, decay: Decay) -> dict[str, float]:
    return incentives(book(val.records.work(), val.records.verdicts()), now, decay)


def current(net: Network) -> int:
    return orchestrator(net).core.run_state().window


async def until_window(net: Network, window: int, timeout: float = 60.0) -> None:
    await wait_for(lambda: current(net) >= window, timeout, f"window {window}")


def by_miner_window(net: Network) -> dict[tuple[str, int], Verdict]:
    return {(v.miner, v.window): v for v in validator(net).records.verdicts()}


def stage_miner(net: Network, stage: int) -> NodeService:
    return next(m for m in net.miners if miner_of(m).state.stage == stage)


async def test_audits_catch_cheaters_and_keep_honest_scores(network: Network) -> None:
    net = network
    val = validator(net)
    auditor = val.auditor
    orch_id = endpoint(net.orchestrator).peer_id
    await wait_for(lambda: orch_id in endpoint(net.validator).sessions, 30, "validator admitted")
    await auditor.tick()  # commits before the run has routed anything
    assert val.status()["commitments"].keys() >= {"0", "1", "2"}

    # Honest window 0 -------------------------------------------------------------------------
    await until_window(net, 1)
    await wait_for(lambda: all(miner_of(m).state.stage is not None for m in net.miners), 30)
    await auditor.tick()
    verdicts = by_miner_window(net)
    ids = sorted(endpoint(m).peer_id for m in net.miners)
    for peer in ids:
        v = verdicts[peer, 0]
        assert (v.outcome, v.reason) == (Outcome.PASS, VerdictReason.OK), v
        assert v.units_audited == 2 * SPEC.batches_per_window and v.backward_units == 4

    # Each cheater on stage 1 ---------------------------------------------------------------
    target = stage_miner(net, 1)
    target_id = endpoint(target).peer_id
    cheated: dict[str, list[int]] = {}
    for kind in KINDS:
        pipeline = miner_of(target).pipeline
        start = current(net)
        pipeline.behaviour = faults.make(kind)
        await until_window(net, start + 2)
        end = current(net)
        pipeline.behaviour = None
        holding = miner_of(target).state.holding
        if holding is not None:  # stale set its learning rate to 0
            holding.engine.config.lr = SPEC.lr
        cheated[kind] = list(range(start + 1, end))  # whole windows under the fault
        await until_window(net, end + 2)  # an honest window before the next fault
    await auditor.tick()
    verdicts = by_miner_window(net)
    for kind, windows in cheated.items():
        outcomes = [verdicts[target_id, w] for w in windows if (target_id, w) in verdicts]
        # A fail in each cheated window, unless a re-routed batch made its receipts incomplete.
        assert any(v.outcome is Outcome.FAIL for v in outcomes), (kind, outcomes)
        assert not any(v.outcome is Outcome.PASS for v in outcomes), (kind, outcomes)
        for v in outcomes:
            if v.outcome is Outcome.FAIL:
                assert v.reason in (VerdictReason.OUTPUT_MISMATCH, VerdictReason.IMPOSSIBLE_UNIT)
    # Honest miners never fail (their windows pass, or are inconclusive after a re-route).
    assert not [v for (m, _), v in verdicts.items() if m != target_id and v.outcome is Outcome.FAIL]

    # Missing evidence is inconclusive --------------------------------------------------------
    gap = current(net)
    await until_window(net, gap + 1)
    first = stage_miner(net, 0)
    receipts = orchestrator(net).core.receipts_for(gap, target_id)
    forward = next(r for r in receipts if r.direction.value == "forward")
    store = miner_of(first).ctx.store
    retention = miner_of(first).retention
    assert retention is not None
    await retention.flush()
    sha = blob_for_digest(store, forward.input_digest)
    assert sha is not None
    assert BlobStore(store).delete(sha)
    await auditor.tick()
    v = by_miner_window(net)[target_id, gap]
    assert (v.outcome, v.reason) == (Outcome.INCONCLUSIVE, VerdictReason.MISSING_EVIDENCE), v

    # Pay book: a fail forfeits everything up to it and bars the penalty windows after it ----
    status = val.status()
    windows = status["scores"]["windows"]
    fails = []
    for kind, cheated_windows in cheated.items():
        failed = [w for w in cheated_windows if verdicts[target_id, w].outcome is Outcome.FAIL]
        assert all(windows[target_id][str(w)] == 0 for w in failed), kind
        fails += failed
    assert windows[target_id][str(gap)] > 0  # its own S stands (the pay rules hold it back)
    assert windows[target_id]["0"] == SPEC.batches_per_window
    incentives = status["scores"]["incentives"]
    now = auditor.current_window
    assert now is not None
    honest = [p for p in ids if p != target_id]
    for peer in honest:
        expected = sum(
            s for w, s in windows[peer].items() if now - int(w) <= status["scores"]["t_decay"]
        )
        assert incentives[peer] == pytest.approx(expected)
    penalty = status["scores"]["penalty_windows"]
    assert penalty > 0 and "forfeits everything" in status["scores"]["rules"]
    assert incentives[target_id] == 0.0  # window 0 passed, and still: forfeited by the fails
    standing = status["scores"]["standings"][target_id]
    assert standing["barred_through"] == max(fails) + penalty
    short = incentives_at(val, now, Decay(t_decay=1))  # step decay: only the last two windows
    for peer in honest:
        assert short[peer] == sum(windows[peer].get(str(w), 0) for w in (now - 1, now))
    assert status["verdicts"]["fail"] >= len(KINDS) and status["verdicts"]["inconclusive"] >= 1

    # The quality screen: every miner of every audited window, before its draw ---------------
    screener = val.screener
    assert screener is not None
    screens = val.records.screens()
    assert set(screens) == set(range(now))
    for row in screens.values():
        assert set(row["screens"]) == set(row["work"]) == set(row["stage_of"])
        assert row["stage_of"][target_id] == 1 and row["cpu_s"] > 0
    assert all(s["steps_behind"] == 0.0 for s in screens[0]["screens"].values())  # seed init
    for kind in ("lazy", "stale"):  # weights that never move: a zero delta, screened out
        for w in cheated[kind]:
            mine = screens[w]["screens"][target_id]
            assert mine["loss_after"] == mine["loss_before"], (kind, w, mine)
            assert target_id in screener.screened_out(w)
    for w in cheated["random"]:
        mine = screens[w]["screens"][target_id]
        assert mine["loss_after"] != mine["loss_before"], (w, mine)
    quality = status["quality"]
    assert sorted(quality["ranking"]) == ids
    assert quality["miners"][target_id]["screened"] == now
    assert quality["events"]["windows_screened"] == now

    # Commit / reveal: each audited window's secret opens its commitment and gives the draw ---
    me = endpoint(net.validator).peer_id
    for window, entry in status["commitments"].items():
        if entry["secret"] is None:
            continue
        secret = bytes.fromhex(entry["secret"])
        assert verify_reveal(bytes.fromhex(entry["commitment"]), me, int(window), secret)
        assert not verify_reveal(bytes.fromhex(entry["commitment"]), me, int(window) + 1, secret)
        chances = entry["chances"]  # every miner: sampled at 3 a window of 3 (or after a fail)
        assert sorted(chances) == ids and all(c == 1.0 for c in chances.values()), chances
        picked = targeted_draw(secret, int(window), [(p, 4) for p in ids], chances)
        assert picked.peers() == ids
        assert targeted_draw(secret, int(window), [(p, 4) for p in ids], {}).peers() == []
    assert any(e["secret"] is None for e in status["commitments"].values())  # not yet revealed

    # The orchestrator got the signed verdicts; only validators may query evidence -----------
    reported = [v for w in cheated["lazy"] for v in orchestrator(net).audits.verdicts(w)]
    assert any(r.miner == target_id and r.outcome is Outcome.FAIL for r in reported)
    miner_ep = endpoint(first)
    for query in (ReceiptQuery(window=0, miner=target_id), WindowInfoQuery(window=0)):
        with pytest.raises(Refused) as refused:
            await miner_ep.request(orch_id, query, timeout=10)
        assert refused.value.reason is Reason.NOT_ALLOWED
    assert auditor.counters["tick_failed"] == 0
    await asyncio.sleep(0)
