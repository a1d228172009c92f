"""Gathering an audit's evidence without contacting the audited miner.

For miner m on stage s in window w the validator takes, from the orchestrator, m's signed
receipts (verified against m's key, ordered by m's sequence numbers), the window's routes and
the checkpoints the stage started from and ended at; from the *neighbours*, each unit's input by
its blake3 digest (stage s's forward input from the route's stage s - 1 miner, its backward input
from the stage s + 1 miner), after checking that the neighbour's own signed receipt names the
same digest as its output. Stage 0's forward input and the last stage's backward input are
rebuilt by the replay. In tolerant mode the miner's outputs come from the downstream neighbour,
which retained them as its inputs. Nothing is asked of the audited miner, so its traffic does not
tell it that it is audited. What cannot be fetched stays None: the replay stops there and the
verdict is inconclusive.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from dataclasses import dataclass, field

import blake3

from node.blob_server import B3, fetch_blob
from p2p.audit_messages import ReceiptList, ReceiptQuery, WindowInfo
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.messages import Receipt
from p2p.refusals import Refused
from p2p.statements import open_statement
from verification.replay import BACKWARD, FORWARD, Unit

ReceiptKey = tuple[int, str, str, int]
"""(batch, route, direction, stage)."""


@dataclass(slots=True)
class Evidence:
    miner: str
    window: int
    stage: int
    units: list[Unit]
    backward: int
    start: bytes | None
    """The checkpoint the window started from (None: seed init)."""
    reported: bytes | None
    """The window-end checkpoint reported for the stage (None: none reported)."""
    digests: list[bytes] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    """Why the receipts may not be all the miner computed (a batch re-routed through it whose
    receipts name no route: the ledger keeps one such receipt per batch, stage and direction),
    so no fail can stand. Receipts that name their route are kept one per route and judged."""
    fetched_bytes: int = 0


@dataclass(slots=True)
class Receipts:
    """Signed receipts of one miner in one window, in its sequence order."""

    miner: str
    items: list[tuple[Receipt, bytes]]

    def index(self) -> dict[ReceiptKey, Receipt]:
        return {(r.batch, r.route, r.direction, r.stage): r for r, _ in self.items}


async def fetch_receipts(
    endpoint: Endpoint, orchestrator: str, window: int, miner: str, *, timeout: float
) -> Receipts:
    """The miner's receipts of `window`; heads it did not sign or of other windows are dropped."""
    heads: list[bytes] = []
    while True:
        reply = await endpoint.request(
            orchestrator,
            ReceiptQuery(window=window, miner=miner, offset=len(heads)),
            timeout=timeout,
        )
        if not isinstance(reply, ReceiptList):
            raise P2PError(f"{orchestrator} answered ReceiptQuery with {reply!r}")
        heads.extend(reply.receipts)
        if not reply.more or not reply.receipts:
            break
    opened = []
    for head in heads:
        try:
            receipt, header = open_statement(head, Receipt, run=endpoint.run, signer=miner)
        except Refused:
            continue
        if receipt.window == window:
            opened.append((header.seq, receipt, head))
    opened.sort(key=lambda item: item[0])
    return Receipts(miner, [(r, h) for _, r, h in opened])


class EvidenceFetcher:
    def __init__(self, endpoint: Endpoint, orchestrator: str, *, timeout: float, exact: bool):
        self._ep = endpoint
        self._orch = orchestrator
        self._timeout = timeout
        self._exact = exact
        self._receipts: dict[tuple[int, str], Receipts] = {}
        self._blobs: dict[str, bytes] = {}
        self._limit = asyncio.Semaphore(8)

    async def receipts(self, window: int, miner: str) -> Receipts:
        key = (window, miner)
        if key not in self._receipts:
            self._receipts[key] = await fetch_receipts(
                self._ep, self._orch, window, miner, timeout=self._timeout
            )
        return self._receipts[key]

    async def blob(self, peer: str, digest: str) -> bytes | None:
        if digest in self._blobs:
            return self._blobs[digest]
        async with self._limit:
            try:
                data = await fetch_blob(self._ep, peer, digest, timeout=self._timeout)
            except (P2PError, TimeoutError, OSError):
                return None
        self._blobs[digest] = data
        return data

    async def gather(self, info: WindowInfo, miner: str, n_stages: int) -> Evidence | None:
        """The evidence for `miner`'s window `info.window`; None when it has no receipts."""
        window = info.window
        mine = await self.receipts(window, miner)
        if not mine.items:
            return None
        stage = mine.items[0][0].stage
        evidence = Evidence(
            miner=miner,
            window=window,
            stage=stage,
            units=[],
            backward=sum(r.direction == BACKWARD for r, _ in mine.items),
            start=None,
            reported=None,
        )
        evidence.digests.extend(blake3.blake3(h).digest() for _, h in mine.items)
        if any(r.stage != stage for r, _ in mine.items):
            # The orchestrator moved it to another stage within the window (e.g. re-admitting
            # miners after a restart): one stage's replay cannot judge the other stage's units,
            # so the window can neither pass nor fail.
            note = "receipts of more than one stage (reassigned within the window)"
            evidence.missing.append(note)
            evidence.incomplete.append(note)
        taken: dict[int, int] = {}
        for route_id, miners in info.routes.items():
            batch = info.batches.get(route_id)
            if batch is not None and len(miners) == n_stages and miners[stage] == miner:
                taken[batch] = taken.get(batch, 0) + 1
        unnamed = {r.batch for r, _ in mine.items if not r.route}  # one receipt for all routes
        evidence.incomplete.extend(
            f"batch {b} was routed through this miner {n} times, its receipts name no route"
            for b, n in taken.items()
            if n > 1 and b in unnamed
        )
        neighbours: dict[int, dict[ReceiptKey, Receipt]] = {}
        for other in (stage - 1, stage + 1):
            if 0 <= other < n_stages:
                merged: dict[ReceiptKey, Receipt] = {}
                peers = {m[other] for m in info.routes.values() if len(m) == n_stages}
                for peer in sorted(peers):
                    merged.update((await self.receipts(window, peer)).index())
                neighbours[other] = merged
        jobs = [self._unit(info, receipt, stage, n_stages, neighbours) for receipt, _ in mine.items]
        for unit, note in await asyncio.gather(*jobs):
            evidence.units.append(unit)
            if note:
                evidence.missing.append(note)
            if isinstance(unit.inputs, bytes):
                evidence.digests.append(unit.input_digest)
                evidence.fetched_bytes += len(unit.inputs)
        start = info.starts.get(miner) or info.start.get(str(stage), "")
        end = info.ends.get(miner, "")
        alone = {m[stage] for m in info.routes.values() if len(m) == n_stages} <= {miner}
        if not end and alone:  # the stage's window-end weights are its own (nothing merged)
            end = info.end.get(str(stage), "")
        if not end:  # it did not close the window: what its weights came to is unknown
            evidence.missing.append("no window-end checkpoint of its own")
        if start:
            evidence.start = await self.blob(self._orch, start)
            if evidence.start is None:
                evidence.missing.append(f"start checkpoint {start}")
        if end and end != start:  # the same digest: the stage reported nothing new
            evidence.reported = await self.blob(self._orch, end)
        for data in (evidence.start, evidence.reported):
            if data is not None:
                evidence.digests.append(hashlib.sha256(data).digest())
        return evidence

    async def _unit(
        self,
        info: WindowInfo,
        r: Receipt,
        stage: int,
        n_stages: int,
        neighbours: dict[int, dict[ReceiptKey, Receipt]],
    ) -> tuple[Unit, str]:
        miners = info.routes.get(r.route)
        forward = r.direction == FORWARD
        rebuilt = (forward and stage == 0) or (not forward and stage == n_stages - 1)
        inputs: bytes | None = None
        claimed: bytes | None = None
        note = ""
        if rebuilt:
            pass
        elif miners is None or len(miners) != n_stages:
            note = f"route {r.route!r} unknown"
        else:
            up = stage - 1 if forward else stage + 1
            theirs = neighbours.get(up, {}).get((r.batch, r.route, r.direction, up))
            if theirs is None or theirs.output_digest != r.input_digest:
                note = f"no receipt of stage {up} sent {r.direction} input of batch {r.batch}"
            else:
                inputs = await self.blob(miners[up], B3 + r.input_digest.hex())
                if inputs is None:
                    note = f"input of {r.direction} batch {r.batch} not served by {miners[up]}"
        if not self._exact and miners is not None and len(miners) == n_stages:
            down = stage + 1 if forward else stage - 1
            if 0 <= down < n_stages and r.output_digest != blake3.blake3(b"").digest():
                claimed = await self.blob(miners[down], B3 + r.output_digest.hex())
            elif forward and down == n_stages and r.loss is not None:
                claimed = struct.pack("<f", r.loss)  # the loss the receipt signs (float32)
        unit = Unit(
            direction=r.direction,
            window=r.window,
            batch=r.batch,
            inputs=inputs,
            output_digest=r.output_digest,
            input_digest=r.input_digest,
            route=r.route,
            weights_version=r.weights_version,
            claimed_output=claimed,
        )
        return unit, note
