"""Transport throughput between two node processes: the p2p path against plain TCP.

Starts a child process (this file with --serve: its own NodeKey, P2PHost + Libp2pTransport and a
plain asyncio TCP server, all on 127.0.0.1 and uvloop), then sends float32 tensors of each size
over four paths, the first three interleaved per repetition because the machine is noisy:

- p2p: the node's path between admitted peers. The head carries the body's blake3 digest and is
  tagged with the pair's session key (keyed blake3, ``p2p.session_keys``: the two sides derived
  it from X25519 keys exchanged at start, as Hello and Welcome carry them); the receiver checks
  the tag before reading the body and the digest after, then answers a small tagged ack. Bodies of
  at least ``bulk_threshold_bytes`` (default 0: all) take the bulk lane.
- signed: the same with Ed25519 signatures instead of session tags (what every frame paid
  before session keys, and what statements kept as evidence still pay).
- tcp: an asyncio TCP connection on uvloop with the same framing, unsigned, acked at once.
- libp2p_only: the signed path with the bulk lane unused (Noise + Yamux all the way).

Prints one JSON object: MB/s (10^6 bytes per second of payload, one way, over the round trip
with the small ack), medians per size and path, ratio_16MiB (p2p / tcp) and 64-byte RTTs.
64 KiB takes 400 repetitions (0.1-0.4 ms each): over the first few dozen plain TCP ran up to a
third faster than later in the same run while the p2p path did not change, so a median of 40
measured that start rather than the steady rate.

    python bench/transport.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import torch
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2p.envelope import (
    Header,
    body_ok,
    decode_head,
    digest,
    open_frame,
    seal,
    signature_ok,
)
from p2p.framing import AsyncioStreamChannel, read_body, read_head, write_frame
from p2p.host import HostConfig, P2PHost
from p2p.identity import NodeKey
from p2p.libp2p_transport import Libp2pTransport
from p2p.session_keys import SessionKeys, SessionSecret, tag_ok
from p2p.transport import Frame

PROTO = "/tessera/bench/1"
KiB, MiB = 1024, 1024 * 1024
SIZES = {"64KiB": 64 * KiB, "1MiB": MiB, "16MiB": 16 * MiB, "64MiB": 64 * MiB}
REPS = {"64KiB": 400, "1MiB": 20, "16MiB": 9, "64MiB": 5}
RTT_REPS = 300
INTERLEAVED = ("p2p", "tcp", "signed")
TIMEOUT_S = 120.0
Send = Callable[[Frame], Awaitable[Frame]]


class Verifier:
    """The receiving side of the p2p path: tag or signature before the body, digest after, and
    an ack tagged or signed as the request was."""

    def __init__(self, key: NodeKey) -> None:
        self._key = key
        self._seq = 0
        self.keys: SessionKeys | None = None
        self._checked: tuple[bytes, Header] | None = None  # as the node's endpoint keeps it

    def check_head(self, peer: str | None, head: bytes, body_len: int) -> Frame | None:
        header, part, sig = decode_head(head)
        if header.mac:
            ok = self.keys is not None and tag_ok(self.keys.recv, part, sig)
        else:
            ok = signature_ok(header, part, sig)
        if not ok or header.body_len != body_len:
            return self._ack(b"bad head", header.mac)
        if peer is not None and header.sender != peer:
            return self._ack(b"sender mismatch", header.mac)
        self._checked = (head, header)
        return None

    async def handle(self, peer: str | None, frame: Frame) -> Frame:
        checked, self._checked = self._checked, None
        if checked is not None and checked[0] is frame.head:  # the head passed check_head
            header, body = checked[1], frame.body
            if not body_ok(header, body):
                return self._ack(b"bad body", header.mac)
        else:
            recv = self.keys.recv if self.keys is not None else None
            header, body = open_frame(frame, sender=peer, mac_key=recv)
        tensor = torch.frombuffer(body, dtype=torch.float32) if len(body) else None
        ok = tensor is None or tensor.numel() * 4 == header.body_len
        return self._ack(b"ok" if ok else b"?", header.mac)

    def _ack(self, meta: bytes, mac: bool) -> Frame:
        self._seq += 1
        send = self.keys.send if mac and self.keys is not None else None
        return sealed(self._key, self._seq, b"", {"ack": meta.decode()}, mac_key=send)


def tensor_bytes(size: int) -> memoryview:
    """A float32 tensor's memory as bytes, without a copy (the view keeps the tensor alive)."""
    return torch.randn(size // 4).numpy().data.cast("B")


def sealed(
    key: NodeKey,
    seq: int,
    body: memoryview | bytes,
    meta: dict[str, str],
    mac_key: bytes | None = None,
) -> Frame:
    n = len(body)
    header = Header(
        type_id=1,
        version=1,
        run="bench",
        sender=key.peer_id,
        seq=seq,
        ts=time.time(),
        digest=digest(body),
        body_len=n,
        dtype="float32" if n else None,
        shape=(n // 4,) if n else None,
        meta=meta,
    )
    return seal(key, header, body, mac_key=mac_key)


async def serve() -> None:
    host = P2PHost(NodeKey.generate(), HostConfig())
    await host.start()
    transport = Libp2pTransport(host)
    verifier_key, secret = NodeKey.generate(), SessionSecret()
    verifier = Verifier(verifier_key)
    transport.serve(PROTO, verifier, max_body=128 * MiB)
    await transport.start()

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = AsyncioStreamChannel(reader, writer)
        try:
            while True:
                _, body_len = await read_head(channel, max_body=128 * MiB)
                await read_body(channel, body_len)
                await write_frame(channel, Frame(b"ack"))
        except Exception:
            writer.close()

    tcp = await asyncio.start_server(on_tcp, "127.0.0.1", 0, limit=4 * MiB)
    info = {
        "peer_id": host.peer_id,
        "addr": host.listen_addrs[0],
        "bulk": transport.bulk_address,
        "tcp": f"127.0.0.1:{tcp.sockets[0].getsockname()[1]}",
        "verifier": verifier_key.peer_id,
        "session": secret.public_hex,
    }
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    client = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    verifier.keys = secret.keys_with(verifier_key.peer_id, client["peer_id"], client["session"])
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent ends
    tcp.close()
    await transport.close()
    await host.stop()


async def measure() -> dict[str, object]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdin is not None
    info = json.loads(await child.stdout.readline())
    key, secret = NodeKey.generate(), SessionSecret()
    child.stdin.write(json.dumps({"peer_id": key.peer_id, "session": secret.public_hex}).encode())
    child.stdin.write(b"\n")
    await child.stdin.drain()
    keys = secret.keys_with(key.peer_id, info["verifier"], info["session"])
    assert keys is not None
    host = P2PHost(key, HostConfig())
    await host.start()
    transport = Libp2pTransport(host)
    await transport.start()
    try:
        await host.connect(info["addr"])
        tcp_host, tcp_port = info["tcp"].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(tcp_host, int(tcp_port), limit=4 * MiB)
        channel = AsyncioStreamChannel(reader, writer)
        seq = 0

        async def p2p(frame: Frame) -> Frame:
            transport.set_bulk_address(info["peer_id"], info["bulk"])
            return await transport.request(info["peer_id"], PROTO, frame, timeout=TIMEOUT_S)

        signed = p2p

        async def libp2p_only(frame: Frame) -> Frame:
            transport.set_bulk_address(info["peer_id"], "")
            return await transport.request(info["peer_id"], PROTO, frame, timeout=TIMEOUT_S)

        async def tcp(frame: Frame) -> Frame:
            await write_frame(channel, frame)
            head, body_len = await read_head(channel, max_body=MiB)
            return Frame(head, await read_body(channel, body_len))

        async def one(path: str, send: Send, body: memoryview) -> float:
            nonlocal seq
            seq += 1
            started = time.perf_counter()
            # Tagging or signing and hashing are part of the path's cost.
            mac = keys.send if path == "p2p" else None
            frame = Frame(b"h" * 64, body) if path == "tcp" else sealed(key, seq, body, {}, mac)
            reply = await send(frame)
            if path != "tcp":
                recv = keys.recv if path == "p2p" else None
                if open_frame(reply, mac_key=recv)[0].meta.get("ack") != "ok":
                    raise RuntimeError(f"{path}: unexpected reply {reply.head!r}")
            return time.perf_counter() - started

        paths: dict[str, Send] = {
            "p2p": p2p,
            "tcp": tcp,
            "signed": signed,
            "libp2p_only": libp2p_only,
        }
        mbps: dict[str, dict[str, float]] = {p: {} for p in paths}
        for name, size in SIZES.items():
            body = tensor_bytes(size)
            times: dict[str, list[float]] = {p: [] for p in paths}
            for path in INTERLEAVED:
                await one(path, paths[path], body)  # warm-up: connections, windows
            for _ in range(REPS[name]):
                for path in INTERLEAVED:
                    times[path].append(await one(path, paths[path], body))
            # libp2p's own thread keeps working after a transfer (window updates, stream
            # closes); warmed up and measured apart so that its wake does not land on the
            # other paths
            await one("libp2p_only", libp2p_only, body)
            for _ in range(REPS[name]):
                times["libp2p_only"].append(await one("libp2p_only", libp2p_only, body))
            for path in paths:
                mbps[path][name] = round(size / statistics.median(times[path]) / 1e6, 1)
        small = tensor_bytes(64)
        rtt = {p: [await one(p, s, small) for _ in range(RTT_REPS)] for p, s in paths.items()}
        writer.close()
        median_rtt = {p: statistics.median(times) for p, times in rtt.items()}
        return {
            "unit": "MB/s = 1e6 payload bytes per second one way (round trip incl. small ack)",
            "mbps": {"p2p": mbps["p2p"], "tcp": mbps["tcp"], "signed": mbps["signed"]},
            "ratio_16MiB": round(mbps["p2p"]["16MiB"] / mbps["tcp"]["16MiB"], 2),
            "ratio_64KiB": round(mbps["p2p"]["64KiB"] / mbps["tcp"]["64KiB"], 2),
            "rtt_ms_64B": round(median_rtt["p2p"] * 1000, 3),
            "rtt_ms_64B_tcp": round(median_rtt["tcp"] * 1000, 3),
            "rtt_ratio_64B": round(median_rtt["p2p"] / median_rtt["tcp"], 1),
            "rtt_ms_64B_signed": round(median_rtt["signed"] * 1000, 3),
            "libp2p_only": {
                "mbps": mbps["libp2p_only"],
                "rtt_ms_64B": round(median_rtt["libp2p_only"] * 1000, 2),
            },
            "reps": REPS,
            "bulk_threshold_bytes": HostConfig().bulk_threshold_bytes,
            "counters": transport.counters,
        }
    finally:
        await transport.close()
        await host.stop()
        child.stdin.close()
        await asyncio.wait_for(child.wait(), 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve())
        return
    result = uvloop.run(measure())
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
