"""Inputs the fuzz benchmark (bench/fuzz.py) found answered without a reason code, replayed at a
real node's bulk lane: each is now refused with the code the corpus names."""

import asyncio
import json
from pathlib import Path

import pytest

from p2p.envelope import decode_head
from p2p.framing import PREAMBLE, PREAMBLE_SIZE
from p2p.libp2p_transport import Libp2pTransport
from p2p.messages import Refusal
from tests.node.conftest import StartNode

CORPUS = Path(__file__).resolve().parents[1] / "fuzz_corpus"
ENTRIES = [json.loads(line) for path in sorted(CORPUS.glob("*.jsonl")) for line in path.open()]


async def reason_of(address: str, data: bytes) -> str:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    head_len, _ = PREAMBLE.unpack(reply[:PREAMBLE_SIZE])
    head = reply[PREAMBLE_SIZE : PREAMBLE_SIZE + head_len]
    if head:
        header = decode_head(head)[0]
        assert header.type_id == Refusal.type_id
        return str(header.meta["reason"])
    return reply[PREAMBLE_SIZE:].decode().split(":", 1)[0]  # a transport notice


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["kind"] for e in ENTRIES])
async def test_corpus_input_is_refused_with_its_reason(start_node: StartNode, entry) -> None:
    node = await start_node("target", ["miner"])
    assert node.endpoint is not None
    transport = node.endpoint.transport
    assert isinstance(transport, Libp2pTransport) and transport.bulk_address
    assert await reason_of(transport.bulk_address, bytes.fromhex(entry["data"])) == entry["expect"]
    assert (await reason_of(transport.bulk_address, bytes.fromhex(entry["data"]))) == entry[
        "expect"
    ]  # and the node still answers
