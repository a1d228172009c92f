"""One member's state in one stage merge, and serving it to the other members.

A session holds this member's encoded contribution for every partition and, for the partitions
it owns, the reduction once computed. `MergeBook` keeps the latest sessions per stage (an owner
goes on serving its reductions after its own merge is done, until the next window's merge) and
answers `MergeFetch`: only members of that merge may fetch; a merge this node has not started
yet, or a reduction not yet computed, is refused `not_ready` (the fetcher retries).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import blake3
import torch

from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.merge_messages import CHUNK, MergeChunk, MergeFetch
from p2p.messages import Message
from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload
from training.merge.plan import MergePlan
from training.merge.quantize import Format
from training.merge.reduce import Reduction

CONTRIBUTION, REDUCED, DIGEST = "contribution", "reduced", "digest"
"""What a MergeFetch asks for: a member's values, an owner's reduction, or only the reduction's
digest (a member takes the bytes from one owner and checks them against the other's digest)."""
KEEP_WINDOWS = 2


@dataclass(slots=True)
class Served:
    data: bytes
    contributors: list[str]
    digest: bytes = b""

    def __post_init__(self) -> None:
        if not self.digest:  # given only for a digest-only reply, which carries no data
            self.digest = blake3.blake3(self.data).digest()

    @property
    def chunks(self) -> int:
        return max(1, -(-len(self.data) // CHUNK))


@dataclass(slots=True)
class MergeSession:
    plan: MergePlan
    me: str
    fmt: Format
    weights: dict[str, float]
    how: Reduction
    contributions: list[Served]
    """This member's own values per partition (encoded)."""
    start: torch.Tensor | None = None
    """The window's starting parameters (lossy formats exchange the change since them)."""
    corrupt: bool = False
    """`--fault bad-merge`: serve a wrong reduction as an owner."""
    reduced: dict[int, Served] = field(default_factory=dict)
    ready: dict[int, asyncio.Event] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.ready = {p.index: asyncio.Event() for p in self.plan.owned_by(self.me)}

    @property
    def key(self) -> tuple[int, int]:
        return self.plan.window, self.plan.stage

    def set_reduced(self, part: int, served: Served) -> None:
        self.reduced[part] = served
        self.ready[part].set()


class MergeBook:
    def __init__(self, endpoint: Endpoint) -> None:
        self._sessions: dict[tuple[int, int], MergeSession] = {}
        self.counters: Counter[str] = Counter()
        endpoint.register(MergeFetch, self.on_fetch)

    def add(self, session: MergeSession) -> None:
        window, stage = session.key
        self._sessions[session.key] = session
        for key in [k for k in self._sessions if k[1] == stage and k[0] <= window - KEEP_WINDOWS]:
            del self._sessions[key]

    def get(self, window: int, stage: int) -> MergeSession | None:
        return self._sessions.get((window, stage))

    async def on_fetch(self, msg: MergeFetch, peer: PeerSession) -> Message:
        session = self._sessions.get((msg.window, msg.stage))
        if session is None:
            self.counters["fetch_not_ready"] += 1
            raise Refused(Reason.NOT_READY, f"no merge of stage {msg.stage} window {msg.window}")
        if peer.peer_id not in session.plan.members:
            self.counters["fetch_refused"] += 1
            raise Refused(Reason.NOT_ALLOWED, "not a member of this merge")
        if not 0 <= msg.part < len(session.plan.partitions) or msg.kind not in (
            CONTRIBUTION,
            REDUCED,
            DIGEST,
        ):
            raise Refused(Reason.MALFORMED, f"partition {msg.part} / kind {msg.kind!r}")
        if msg.kind == CONTRIBUTION:
            served: Served | None = session.contributions[msg.part]
        else:
            if msg.part not in session.ready:
                raise Refused(Reason.NOT_FOUND, f"partition {msg.part} is not owned here")
            served = session.reduced.get(msg.part)
            if served is None:
                raise Refused(Reason.NOT_READY, f"partition {msg.part} not reduced yet")
        assert served is not None
        if not 0 <= msg.chunk < served.chunks:
            raise Refused(Reason.MALFORMED, f"chunk {msg.chunk} of {served.chunks}")
        piece = (
            b"" if msg.kind == DIGEST else served.data[msg.chunk * CHUNK : (msg.chunk + 1) * CHUNK]
        )
        session.counters["bytes_sent"] += len(piece)
        session.counters[f"bytes_sent_{msg.kind}"] += len(piece)
        session.counters[f"served_{msg.kind}"] += 1
        return MergeChunk(
            window=msg.window,
            stage=msg.stage,
            part=msg.part,
            kind=msg.kind,
            chunk=msg.chunk,
            chunks=served.chunks,
            digest=served.digest,
            contributors=served.contributors,
            tensor=TensorPayload("uint8", (len(piece),), piece),
        )
