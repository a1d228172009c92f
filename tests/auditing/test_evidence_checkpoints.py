"""Which window-end checkpoint an audit holds a miner to: its own, never its stage's merged one.

A miner with stage-mates whose close failed (it reported no checkpoint of its own) must not be
judged against the stage's merged weights, which are not what it computed: its evidence notes
the gap (a pass becomes inconclusive), and no reported checkpoint is fetched.
"""

import dataclasses
from typing import Any

from node.auditing.evidence import EvidenceFetcher, Receipts
from p2p.audit_messages import WindowInfo
from p2p.messages import Receipt

W = 3
CKPT = {"start": b"start-checkpoint", "merged": b"merged-checkpoint", "own": b"own-checkpoint"}


def receipts(miner: str, batch: int) -> Receipts:
    units = [
        Receipt(window=W, batch=batch, stage=0, direction=d, input_digest=b"\x01" * 32,
                output_digest=b"\x02" * 32, weights_version="v", route=f"{W}.{batch}.1")
        for d in ("forward", "backward")
    ]  # fmt: skip
    return Receipts(miner, [(r, b"head") for r in units])


def fetcher(info: WindowInfo, miners: list[str]) -> EvidenceFetcher:
    f = EvidenceFetcher(None, "orch", timeout=1.0, exact=True)  # type: ignore[arg-type]
    for i, m in enumerate(miners):  # what the orchestrator would serve: no network needed
        f._receipts[(W, m)] = receipts(m, i)
    f._blobs.update({name: data for name, data in CKPT.items()})
    return f


def info(routes: dict[str, list[str]], **checkpoints: Any) -> WindowInfo:
    return WindowInfo(window=W, current=W + 1, closed=True, routes=routes,
                      batches={r: int(r.split(".")[1]) for r in routes},
                      start={"0": "start"}, end={"0": "merged"}, **checkpoints)  # fmt: skip


async def test_a_miner_with_stage_mates_is_held_to_its_own_checkpoint_only() -> None:
    routes = {f"{W}.0.1": ["a"], f"{W}.1.1": ["b"]}  # one stage, two miners: merged at the end
    with_own = info(routes, ends={"a": "own", "b": "own"})
    ev = await fetcher(with_own, ["a", "b"]).gather(with_own, "a", 1)
    assert ev is not None and ev.reported == CKPT["own"] and ev.missing == []
    without = info(routes, ends={"b": "own"})  # a's close failed: nothing of its own
    ev = await fetcher(without, ["a", "b"]).gather(without, "a", 1)
    assert ev is not None and ev.reported is None  # not the stage's merged checkpoint
    assert ev.missing == ["no window-end checkpoint of its own"]


async def test_a_miner_alone_on_its_stage_is_held_to_the_stages_checkpoint() -> None:
    alone = info({f"{W}.0.1": ["a"]})  # no merge: the stage's end is the miner's own
    ev = await fetcher(alone, ["a"]).gather(alone, "a", 1)
    assert ev is not None and ev.reported == CKPT["merged"] and ev.missing == []


async def test_a_miner_moved_to_another_stage_within_a_window_cannot_fail_it() -> None:
    """Chaos found it: after an orchestrator restart a miner held stage 0 then stage 1 in one
    window, and the stage-0 replay of its stage-1 units failed it (input_mismatch)."""
    routes = {f"{W}.0.1": ["a", "b"], f"{W}.1.1": ["c", "a"]}
    moved = info(routes, ends={"a": "own"})
    f = fetcher(moved, ["a"])
    first = receipts("a", 0).items[0]
    on_stage_1 = (dataclasses.replace(first[0], stage=1, batch=1, route=f"{W}.1.1"), b"head")
    f._receipts[(W, "a")] = Receipts("a", [first, on_stage_1])
    f._receipts[(W, "b")] = Receipts("b", [])  # its stage-1 neighbour on route 0
    ev = await f.gather(moved, "a", 2)
    assert ev is not None
    note = "receipts of more than one stage (reassigned within the window)"
    assert note in ev.incomplete and note in ev.missing  # neither a fail nor a pass
