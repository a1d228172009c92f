"""The butterfly exchange between real endpoints: exact fp32 average, owners and members that
fail, a lying owner, quantized exchange within its stated error."""

import asyncio

import pytest
import torch

from node.merging.runner import MergeResult
from node.merging.session import CONTRIBUTION
from p2p.admission import PeerSession
from p2p.merge_messages import MergeFetch
from p2p.messages import Message
from tests.merging.kit import Member, members, run_all, session, vectors
from training.merge import quantize
from training.merge.reduce import weighted_mean

SIZE = 10_001


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory):
    return members(tmp_path_factory.mktemp("merge-wallets"), 5)


def ok(results: list[MergeResult | BaseException]) -> list[MergeResult]:
    out = [r for r in results if isinstance(r, MergeResult)]
    assert len(out) == len(results), results
    return out


@pytest.mark.parametrize("n", [2, 3, 5])
async def test_fp32_merge_is_the_exact_weighted_average(group, n: int) -> None:
    g = group[:n]
    local = vectors(n, SIZE, seed=n)
    weights = {m.peer_id: float(i + 1) for i, m in enumerate(g)}
    ordered = sorted(range(n), key=lambda i: g[i].peer_id)  # the plan orders members by id
    exact = weighted_mean([local[i] for i in ordered], [weights[g[i].peer_id] for i in ordered])
    results = ok(await run_all([(m, session(m, g, local[i], weights, window=10 + n))
                                for i, m in enumerate(g)]))  # fmt: skip
    for r in results:
        assert torch.equal(r.values, exact)  # bitwise: max abs difference 0
        assert r.contributors == sorted(m.peer_id for m in g)
        assert r.disputes == [] and r.reassigned == 0


async def test_an_owner_that_never_reduces_has_its_partitions_taken_over(group) -> None:
    g = group[:4]
    local = vectors(4, SIZE, seed=7)
    weights = {m.peer_id: 1.0 for m in g}
    sessions = [session(m, g, local[i], weights, window=20) for i, m in enumerate(g)]
    silent = g[3]
    silent.book.add(sessions[3])  # serves its contribution, never reduces or fetches
    results = ok(await run_all(list(zip(g[:3], sessions[:3], strict=True)), deadline_s=3.0))
    ordered = [local[i] for i in sorted(range(4), key=lambda i: g[i].peer_id)]
    exact = weighted_mean(ordered, [1.0] * 4)
    owned = len(sessions[3].plan.owned_by(silent.peer_id))
    for r in results:
        assert torch.equal(r.values, exact)
        assert r.reassigned >= owned - 1  # every partition it owned, but where we own it too
    assert sum(r.reassigned for r in results) >= owned


async def test_a_member_that_left_is_dropped_from_the_average(group) -> None:
    g = group[:4]
    local = vectors(4, SIZE, seed=8)
    weights = {m.peer_id: 1.0 for m in g}
    present = g[:3]
    pairs = [(m, session(m, g, local[i], weights, window=30)) for i, m in enumerate(present)]
    results = ok(await run_all(pairs, deadline_s=3.0))
    ordered = [local[i] for i in sorted(range(3), key=lambda i: present[i].peer_id)]
    exact = weighted_mean(ordered, [1.0] * 3)
    for r in results:
        assert torch.equal(r.values, exact)
        assert r.contributors == sorted(m.peer_id for m in present)


async def test_a_slow_owner_that_left_a_member_out_is_not_disputed(group) -> None:
    """An owner whose gather timed out on one member serves an honest reduction of fewer
    contributions: members check it against the contributions it names, raise no dispute, and
    all take the fuller replica."""
    g = group[:4]
    deadline = 6.0
    local = vectors(4, SIZE, seed=13)
    weights = {m.peer_id: 1.0 for m in g}
    sessions = [session(m, g, local[i], weights, window=35) for i, m in enumerate(g)]
    part = sessions[0].plan.partitions[0]
    by_id = {m.peer_id: (m, s) for m, s in zip(g, sessions, strict=True)}
    slow_owner = part.owners[1]
    slow_member: Member = next(by_id[p][0] for p in sorted(by_id) if p not in part.owners)
    loop = asyncio.get_running_loop()
    release = loop.time() + 0.5 * deadline  # after the owners' gather (0.4 of the deadline)

    async def slow_to_one_owner(msg: MergeFetch, peer: PeerSession) -> Message:
        if (msg.kind, msg.part, peer.peer_id) == (CONTRIBUTION, part.index, slow_owner):
            await asyncio.sleep(max(release - loop.time(), 0.0))
        return await slow_member.book.on_fetch(msg, peer)

    slow_member.node.endpoint.register(MergeFetch, slow_to_one_owner)
    try:
        results = ok(await run_all(list(zip(g, sessions, strict=True)), deadline_s=deadline))
    finally:
        slow_member.node.endpoint.register(MergeFetch, slow_member.book.on_fetch)
    served = by_id[slow_owner][1].reduced[part.index]
    assert slow_member.peer_id not in served.contributors  # it really left the member out
    exact = weighted_mean([local[i] for i in sorted(range(4), key=lambda i: g[i].peer_id)],
                          [1.0] * 4)  # fmt: skip
    for r in results:
        assert r.disputes == []
        assert torch.equal(r.values, exact)
    assert all(m.disputes == [] for m in g)


async def test_a_lying_owner_is_reported_and_outvoted_by_recomputation(group) -> None:
    g = group[:4]
    local = vectors(4, SIZE, seed=9)
    weights = {m.peer_id: 1.0 for m in g}
    liar = g[1]
    pairs = [(m, session(m, g, local[i], weights, corrupt=m is liar, window=40))
             for i, m in enumerate(g)]  # fmt: skip
    results = ok(await run_all(pairs))
    exact = weighted_mean([local[i] for i in sorted(range(4), key=lambda i: g[i].peer_id)],
                          [1.0] * 4)  # fmt: skip
    for m, r in zip(g, results, strict=True):
        assert torch.equal(r.values, exact), m is liar
        if m is not liar:
            assert r.disputes and all(d.wrong == [liar.peer_id] for d in r.disputes)
            assert all(d.recomputed not in [d.digests[d.owners.index(liar.peer_id)]]
                       for d in r.disputes)  # fmt: skip
    owned = len(pairs[1][1].plan.owned_by(liar.peer_id))
    honest_disputes = [d for m in g if m is not liar for d in m.disputes]
    assert len({d.part for d in honest_disputes}) == owned


@pytest.mark.parametrize("fmt", ["bf16", "int8"])
async def test_quantized_exchange_stays_within_its_stated_error(group, fmt) -> None:
    g = group[:3]
    start = vectors(1, SIZE, seed=11)[0]
    local = [start + 0.01 * d for d in vectors(3, SIZE, seed=12)]
    weights = {m.peer_id: 1.0 for m in g}
    pairs = [(m, session(m, g, local[i], weights, fmt=fmt, start=start, window=50))
             for i, m in enumerate(g)]  # fmt: skip
    results = ok(await run_all(pairs))
    ordered = [local[i] for i in sorted(range(3), key=lambda i: g[i].peer_id)]
    exact = weighted_mean(ordered, [1.0] * 3)
    deltas = torch.stack([x - start for x in local])
    # Each contribution is rounded once and the reduced change once more.
    allowed = quantize.bound(fmt, deltas.abs().amax(0)) * 2 + 1e-6
    for r in results:
        err = (r.values - exact).abs()
        assert bool((err <= allowed).all()), float((err - allowed).max())
        assert float(err.max()) > 0  # lossy for real
    assert all(torch.equal(results[0].values, r.values) for r in results)  # members agree
