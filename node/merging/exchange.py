"""Fetching one partition's payload (a contribution or a reduction) from a merge peer.

Chunks are fetched in order and checked against the digest every chunk reply carries. Requests go
on the bulk lane (`MergeFetch.bulk`). Refusals that say "later" (`not_ready`: the peer has
not started this merge, or not reduced yet; `rate_limited`, `over_capacity`, `stale`: a busy
peer or a request that queued too long) and transport failures (a connection not up yet, a
stalled request) are retried with backoff until the deadline. Another refusal, a reply that does
not fit, or running out of time gives None: the caller treats the peer as absent for this
partition.
"""

from __future__ import annotations

import asyncio
import logging

import blake3

from node.merging.session import DIGEST, MergeSession, Served
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.merge_messages import MergeChunk, MergeFetch
from p2p.refusals import Reason, Refused
from training.merge.quantize import encoded_size

log = logging.getLogger(__name__)
RETRY_S = (0.02, 0.5)
REQUEST_S = 15.0
"""One request's time limit: a stalled connection is retried on a fresh request in time."""
LATER = frozenset({Reason.NOT_READY, Reason.RATE_LIMITED, Reason.OVER_CAPACITY, Reason.STALE})
"""Refusals of a peer that may well answer a retry."""


async def fetch_part(
    endpoint: Endpoint,
    session: MergeSession,
    peer: str,
    part: int,
    kind: str,
    *,
    until: float,
) -> Served | None:
    """The peer's `kind` payload of partition `part`, or None (absent, wrong, or too late)."""
    loop = asyncio.get_running_loop()
    window, stage = session.key
    numel = session.plan.partitions[part].numel
    expected = encoded_size(session.fmt, numel)
    pieces: list[bytes] = []
    head: MergeChunk | None = None
    delay = RETRY_S[0]
    while head is None or len(pieces) < head.chunks:
        left = until - loop.time()
        if left <= 0:
            session.counters["fetch_timed_out"] += 1
            return None
        msg = MergeFetch(window=window, stage=stage, part=part, kind=kind, chunk=len(pieces))
        try:
            reply = await endpoint.request(peer, msg, timeout=min(left, REQUEST_S))
        except Refused as exc:
            if exc.reason in LATER:
                if exc.reason is not Reason.NOT_READY:
                    session.counters["fetch_retried"] += 1
                await asyncio.sleep(min(delay, max(until - loop.time(), 0)))
                delay = min(delay * 2, RETRY_S[1])
                continue
            session.counters["fetch_refused"] += 1
            log.info("merge fetch of %s %s from %s refused: %s", kind, part, peer, exc)
            return None
        except (P2PError, TimeoutError, OSError) as exc:  # transient: the deadline decides
            session.counters["fetch_retried"] += 1
            log.info("merge fetch of %s %s from %s failed (retrying): %s", kind, part, peer, exc)
            await asyncio.sleep(min(delay, max(until - loop.time(), 0)))
            delay = min(delay * 2, RETRY_S[1])
            continue
        if (
            not isinstance(reply, MergeChunk)
            or (reply.part, reply.kind, reply.chunk) != (part, kind, len(pieces))
            or (head is not None and (reply.digest, reply.chunks) != (head.digest, head.chunks))
        ):
            session.counters["fetch_malformed"] += 1
            return None
        head = head or reply
        if kind == DIGEST:
            return Served(b"", sorted(reply.contributors), reply.digest)
        pieces.append(bytes(reply.tensor.data))
        session.counters["bytes_received"] += len(pieces[-1])
    data = b"".join(pieces)
    if len(data) != expected or blake3.blake3(data).digest() != head.digest:
        session.counters["fetch_bad_digest"] += 1
        return None
    return Served(data, sorted(head.contributors))
