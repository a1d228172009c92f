"""Eight honest members on real nodes (libp2p hosts with their bulk lanes, LMDB) merge exactly,
agree bitwise and raise no dispute, on an idle machine and with every core oversubscribed."""

from pathlib import Path

import pytest
import torch

from tests.busy_cpu import busy_cpu
from tests.merging.network_kit import merge_among, start_miners, stop

MEMBERS = 8
SIZE = 2_000_000
"""8 MB of fp32 per member: each partition's contribution and reduction is 1 MB."""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
async def test_eight_honest_members_agree_without_disputes(tmp_path: Path, busy: bool) -> None:
    nodes, tasks = await start_miners(tmp_path, MEMBERS)
    base = torch.randn(SIZE, generator=torch.Generator().manual_seed(1))
    try:
        with busy_cpu() if busy else busy_cpu(0):
            outcome = await merge_among(nodes, base, "fp32", window=1, deadline_s=120.0)
    finally:
        await stop(tasks)
    counters = outcome.counters()
    assert outcome.disputes == 0, counters
    assert outcome.agree
    assert outcome.max_abs_diff == 0.0
    assert outcome.reassigned == 0, counters
    assert counters["contributions_missing"] == 0
    for result in outcome.results:
        assert result.contributors == sorted(n.endpoint.peer_id for n in nodes if n.endpoint)
    for s in outcome.sessions:  # every payload fetched once: what the plan says each serves
        assert s.counters["bytes_sent"] == s.plan.bytes_sent(s.me, lambda k: 4 * k)
