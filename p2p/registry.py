"""Every message type the endpoint knows: requests (with a protocol id) and replies by type id."""

from __future__ import annotations

from p2p.audit_messages import (
    ReceiptList,
    ReceiptQuery,
    VerdictList,
    VerdictQuery,
    VerdictReport,
    WindowInfo,
    WindowInfoQuery,
)
from p2p.chain_messages import ChainCall, ChainQuery, ChainResult, ChainView
from p2p.merge_messages import MergeChunk, MergeDispute, MergeFetch, MergeReport, MergeStart
from p2p.messages import (
    Ack,
    Activation,
    Assign,
    BlobReply,
    BlobRequest,
    Gradient,
    Heartbeat,
    Hello,
    Message,
    Receipt,
    ReceiptBatch,
    Refusal,
    WeightsReport,
    Welcome,
    WindowClose,
    Work,
)

REQUESTS: tuple[type[Message], ...] = (
    Hello,
    Assign,
    Heartbeat,
    Work,
    Activation,
    Gradient,
    WindowClose,
    Receipt,
    ReceiptBatch,
    BlobRequest,
    ReceiptQuery,
    WindowInfoQuery,
    VerdictReport,
    VerdictQuery,
    MergeStart,
    MergeFetch,
    MergeDispute,
    ChainCall,
    ChainQuery,
)
REPLIES: dict[int, type[Message]] = {
    c.type_id: c
    for c in (
        Ack,
        Refusal,
        Welcome,
        WeightsReport,
        BlobReply,
        ReceiptList,
        WindowInfo,
        VerdictList,
        MergeReport,
        MergeChunk,
        ChainResult,
        ChainView,
    )
}
