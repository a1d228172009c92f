"""`VerdictQuery`: the fails validators reported, from a window on, a page at a time."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.run_control.audit_desk import AUDITS, VERDICT_PAGE, AuditDesk
from p2p.admission import PeerSession
from p2p.audit_messages import VerdictList, VerdictQuery
from p2p.refusals import Reason, Refused
from store import Store, StoreConfig

VALIDATOR = PeerSession("v", "hk", ("validator",), 1.0, "")
MINER = PeerSession("m", "hk", ("miner",), 1.0, "")


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[AuditDesk]:
    with Store.open(tmp_path / "store", StoreConfig(sync=False, map_size_mib=64)) as store:
        d = AuditDesk(None, None, store, "run", batches_per_window=1)  # type: ignore[arg-type]
        with store.write() as txn:  # reported verdicts as on_verdicts keeps them
            for w in range(3):
                for i in range(30):  # two windows' fails outgrow a page
                    outcome = "pass" if i % 3 == 0 else "fail"
                    row = {"statement": f"{w}/{i}".encode(), "outcome": outcome}
                    txn.put(AUDITS, f"run/reported/{w:010d}/m{i:02d}/v", row)
        yield d


async def test_fails_come_a_page_at_a_time_from_a_window_on(desk: AuditDesk) -> None:
    heads: list[bytes] = []
    reply = await desk.on_verdict_query(VerdictQuery(since=1), VALIDATOR)
    while True:
        assert isinstance(reply, VerdictList) and len(reply.verdicts) <= VERDICT_PAGE
        heads += reply.verdicts
        if not reply.more:
            break
        reply = await desk.on_verdict_query(VerdictQuery(since=1, after=reply.cursor), VALIDATOR)
    expected = [f"{w}/{i}".encode() for w in (1, 2) for i in range(30) if i % 3]
    assert heads == expected  # every fail of windows 1 and 2 once, in order; no pass
    with pytest.raises(Refused) as refused:
        await desk.on_verdict_query(
            VerdictQuery(since=0), PeerSession("m", "hk", ("miner",), 1.0, "")
        )
    assert refused.value.reason is Reason.NOT_ALLOWED


async def test_reported_verdicts_of_old_windows_are_forgotten(desk: AuditDesk) -> None:
    assert desk.prune(2) == 60
    assert desk.prune(2) == 0
    reply = await desk.on_verdict_query(VerdictQuery(since=0), VALIDATOR)
    assert isinstance(reply, VerdictList)
    assert {bytes(h).split(b"/")[0] for h in reply.verdicts} == {b"2"}
