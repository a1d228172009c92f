"""The stage merge's messages: the orchestrator starts a stage's merge, members fetch
partitions (contributions and reduced results) from each other, and report disagreements.

Partition payloads are the bytes of `training.merge.quantize` (fp32, bf16 or int8) cut into
chunks of at most `CHUNK` bytes; `digest` is the blake3 of the whole partition payload, so a
fetcher checks every chunk set it assembles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2p.messages import Message
from p2p.tensors import TensorPayload

MiB = 1024 * 1024
CHUNK = 4 * MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeStart(Message):
    """Orchestrator → each member of a stage: merge the weights of the window just closed.

    `members` and `weights` (validated work, the same order) fix the plan; `start` names the
    checkpoint the window started from ("" = seed init)."""

    type_id = 60
    protocol = "/tessera/merge/start/1"
    rate_per_s = 5.0
    burst = 20
    window: int
    stage: int
    members: list[str]
    weights: list[float]
    start: str = ""
    """A checkpoint of the window's start (sha256 hex, served by the orchestrator)."""
    exchange: str = "fp32"
    robust: str = "mean"
    outer_lr: float = 0.0
    """0: no outer step (the merged weights are the reduction itself)."""
    outer_momentum: float = 0.0
    deadline_s: float = 60.0
    moments: bool = False
    """Merge the AdamW moments with the parameters (plain averages only: not with an outer
    step)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeReport(Message):
    """Reply to MergeStart: the member's post-merge checkpoint and the merged version."""

    type_id = 61
    re: int = 0
    window: int
    stage: int
    digest: str
    """The member's checkpoint after the merge (sha256 hex, served by BlobRequest)."""
    merged_version: str
    """Digest of the merged weights (`StageEngine.weights_digest`): equal for every member."""
    contributors: list[str] = field(default_factory=list)
    disputes: int = 0
    reassigned: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeFetch(Message):
    """Member → member: chunk `chunk` of partition `part`, `kind` "contribution" (the peer's
    own values) or "reduced" (the peer's reduction, as an owner)."""

    type_id = 62
    protocol = "/tessera/merge/fetch/1"
    bulk = True
    rate_per_s = 500.0
    burst = 1000
    window: int
    stage: int
    part: int
    kind: str
    chunk: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeChunk(Message):
    type_id = 63
    dtypes = frozenset({"uint8"})
    max_rank = 1
    max_body = CHUNK
    re: int = 0
    window: int
    stage: int
    part: int
    kind: str
    chunk: int
    chunks: int
    digest: bytes
    contributors: list[str] = field(default_factory=list)
    tensor: TensorPayload


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeDispute(Message):
    """Member → orchestrator and validators: two owners served different reductions of one
    partition (digests of each) and what recomputation from the contributions gave."""

    type_id = 64
    protocol = "/tessera/merge/dispute/1"
    rate_per_s = 10.0
    burst = 50
    window: int
    stage: int
    part: int
    owners: list[str]
    digests: list[bytes]
    recomputed: bytes
    wrong: list[str] = field(default_factory=list)
    """Owners whose reduction differs from the recomputed one."""
