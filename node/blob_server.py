"""Blob exchange: serve the node's content-addressed blobs, and fetch a peer's by digest.

Blobs are keyed by sha256; the fetcher re-hashes what it receives, so a peer cannot answer a
request with other bytes (the envelope's own digest only proves who sent them). A request for
`b3:<hex>` names bytes by the blake3 digest a receipt carries; a miner resolves it through its
retention index (`node.mining.retention.blob_for_digest`), so auditors fetch a unit's tensors
from whichever neighbour retained them.
"""

from __future__ import annotations

import asyncio
import hashlib

import blake3

from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.messages import BlobReply, BlobRequest, Message
from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload
from store import BlobStore, Store

B3 = "b3:"


def serve_blobs(endpoint: Endpoint, blobs: BlobStore) -> None:
    # Imported here: node.mining fetches checkpoints through this module.
    from node.mining.retention import blob_for_digest

    store: Store = blobs._store  # the node's store, which holds the retention index too

    async def on_blob(msg: BlobRequest, peer: PeerSession) -> Message:
        key = msg.digest
        if key.startswith(B3):
            try:
                b3 = bytes.fromhex(key[len(B3) :])
            except ValueError:
                raise Refused(Reason.MALFORMED, f"blob digest {key!r}") from None
            if len(b3) != 32:
                raise Refused(Reason.MALFORMED, f"blob digest {key!r}")
            sha = blob_for_digest(store, b3)
            if sha is None:
                raise Refused(Reason.NOT_FOUND, f"no retained bytes {key}")
            key = sha
        try:
            data = blobs.get(key)
        except ValueError as exc:
            raise Refused(Reason.MALFORMED, str(exc)) from None
        if data is None:
            raise Refused(Reason.NOT_FOUND, f"no blob {msg.digest}")
        return BlobReply(tensor=TensorPayload("uint8", (len(data),), data))

    endpoint.register(BlobRequest, on_blob)


async def fetch_blob(endpoint: Endpoint, peer_id: str, digest: str, *, timeout: float) -> bytes:
    """The blob `digest` (sha256 hex, or `b3:<blake3 hex>`) from `peer_id`, re-hashed."""
    reply = await endpoint.request(peer_id, BlobRequest(digest=digest), timeout=timeout)
    if not isinstance(reply, BlobReply):
        raise Refused(Reason.MALFORMED, f"{peer_id} answered a blob request with {reply!r}")
    data = bytes(reply.tensor.data)
    if digest.startswith(B3):
        if blake3.blake3(data).hexdigest() != digest[len(B3) :]:
            raise Refused(Reason.BAD_DIGEST, f"{peer_id} served other bytes for blob {digest}")
        return data
    if hashlib.sha256(data).hexdigest() != digest:
        raise Refused(Reason.BAD_DIGEST, f"{peer_id} served other bytes for blob {digest}")
    return data


async def keep_blob(
    endpoint: Endpoint, blobs: BlobStore, peer_id: str, digest: str, *, timeout: float,
    retain_s: float,
) -> None:  # fmt: skip
    """Make sure the blob `digest` is in `blobs`, fetching it from `peer_id` when absent."""
    if not blobs.has(digest):
        data = await fetch_blob(endpoint, peer_id, digest, timeout=timeout)
        await asyncio.to_thread(blobs.put, data, retain_s=retain_s)
