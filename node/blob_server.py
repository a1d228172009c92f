"""Blob exchange: serve the node's content-addressed blobs, and fetch a peer's by digest.

Blobs are keyed by sha256; the fetcher re-hashes what it receives, so a peer cannot answer a
request with other bytes (the envelope's own digest only proves who sent them).
"""

from __future__ import annotations

import hashlib

from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.messages import BlobReply, BlobRequest, Message
from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload
from store import BlobStore


def serve_blobs(endpoint: Endpoint, blobs: BlobStore) -> None:
    async def on_blob(msg: BlobRequest, peer: PeerSession) -> Message:
        try:
            data = blobs.get(msg.digest)
        except ValueError as exc:
            raise Refused(Reason.MALFORMED, str(exc)) from None
        if data is None:
            raise Refused(Reason.NOT_FOUND, f"no blob {msg.digest}")
        return BlobReply(tensor=TensorPayload("uint8", (len(data),), data))

    endpoint.register(BlobRequest, on_blob)


async def fetch_blob(endpoint: Endpoint, peer_id: str, digest: str, *, timeout: float) -> bytes:
    reply = await endpoint.request(peer_id, BlobRequest(digest=digest), timeout=timeout)
    if not isinstance(reply, BlobReply):
        raise Refused(Reason.MALFORMED, f"{peer_id} answered a blob request with {reply!r}")
    data = bytes(reply.tensor.data)
    if hashlib.sha256(data).hexdigest() != digest:
        raise Refused(Reason.BAD_DIGEST, f"{peer_id} served other bytes for blob {digest}")
    return data
