"""Fuzz benchmark: malformed inputs at a running node over each of its entrances.

Starts a real `tessera node` process with every role (orchestrator, miner, validator) and, in
this process, an admitted peer (a real node with a hotkey binding) that sends `--inputs`
malformed inputs (`bench/fuzz_inputs.py`, seeded by `--seed`): signed envelopes of every request
type broken one way each (bit flips, truncation, bad msgpack, missing signature, unknown and
wrong types, wrong run, stale, wrong sender, NaN and Inf tensors, bad shapes and dtypes, bad
fields, oversize heads, replays, bad deflated bodies) on each libp2p protocol and on the bulk
lane; raw bulk-lane streams (oversize preambles, truncated frames, garbage); hostile HTTP
requests (paths, methods, headers, request lines). Every 50 inputs it asks `/healthz`.

Prints one JSON object: `inputs`, `crashes` (the node process exited), `healthz_failures`,
`refusals_without_reason` (a rejection whose reply carries no reason code: a Refusal with an
unknown reason, a transport notice without one, or no answer to a complete frame; a protocol the
node does not serve is refused by libp2p's multistream-select, counted as `unknown_type`),
`refusals` by reason, `refusals_counted` (the node's `tessera_refusals_total` and transport
refusal counters grew by at least what it answered), the node's RSS and open descriptors before
the run, after it and once the peer left, and `findings` (inputs that broke a goal; `--corpus
DIR` keeps them as JSON lines).

    python bench/fuzz.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from fuzz_inputs import FRAME_KINDS, HTTP_KINDS, RAW_KINDS, FrameMaker, http_request, raw_bulk

from p2p.bulk_lane import split_host_port
from p2p.envelope import MalformedMessage, decode_head
from p2p.framing import PREAMBLE, PREAMBLE_SIZE
from p2p.libp2p_transport import Libp2pTransport
from p2p.messages import Refusal
from p2p.refusals import Reason
from p2p.transport import TransportError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REASONS = {r.value for r in Reason}
NOTICE = re.compile(r"refused the frame: ([a-z_]+): ")
LAST_ERROR = [""]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus", type=Path, help="append the inputs that broke a goal here")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    return p.parse_args(argv)


def proc_figures(pid: int) -> dict[str, float]:
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return {"rss_mib": round(rss, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def settled(pid: int, timeout: float = 90.0) -> dict[str, float]:
    """The node's figures once its RSS stopped moving (its roles finished starting up)."""
    last = proc_figures(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(3)
        now = proc_figures(pid)
        if abs(now["rss_mib"] - last["rss_mib"]) <= 0.01 * last["rss_mib"]:
            return now
        last = now
    return last


def start_target(home: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    cmd = [
        sys.executable, "-m", "node", "node", "--home", str(home), "--role", "orchestrator",
        "--role", "miner", "--role", "validator", "--http", "127.0.0.1:0",
        "--set", 'orchestrator.run.model="tiny"', "--set", "orchestrator.eval_batches=0",
    ]  # fmt: skip
    log = (home.parent / "target.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    path = home / "endpoints.json"
    deadline = time.monotonic() + 120
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench: the target node did not start; see {log.name}")
        time.sleep(0.2)
    return proc, json.loads(path.read_text())


async def scrape_refusals(session: aiohttp.ClientSession, http: str) -> int:
    async with session.get(f"{http}/metrics") as response:
        text = await response.text()
    pattern = (
        r'^tessera_(?:refusals_total\{reason="[a-z_]+"\}'
        r'|transport_events_total\{event="refused_[a-z_]+"\}) (\S+)$'
    )
    return int(sum(float(v) for v in re.findall(pattern, text, re.MULTILINE)))


def classify_reply(head: bytes) -> str:
    """ "accepted", "refused:<reason>" or "refused:?" for a handler's reply head."""
    try:
        header = decode_head(head)[0]
    except MalformedMessage:
        return "refused:?"
    if header.type_id != Refusal.type_id:
        return "accepted"
    reason = header.meta.get("reason")
    return f"refused:{reason}" if reason in REASONS else "refused:?"


async def send_frame(transport: Libp2pTransport, peer: str, item: Any) -> str:
    try:
        reply = await transport.request(
            peer, item.protocol, item.frame, timeout=5.0, bulk=item.bulk
        )
    except TransportError as exc:
        found = NOTICE.search(str(exc))
        if found:
            return f"refused:{found.group(1)}" if found.group(1) in REASONS else "refused:?"
        if "does not serve" in str(exc):  # multistream-select answered "na" for the protocol
            return "refused:unknown_type"
        LAST_ERROR[0] = str(exc)[:300]
        return "no_reply"
    return classify_reply(bytes(reply.head))


async def send_raw(address: str, data: bytes, expects_reply: bool) -> str:
    host, port = split_host_port(address)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        if not expects_reply:
            writer.close()
            return "closed"
        reply = await asyncio.wait_for(reader.read(4096), 5.0)
    except (TimeoutError, ConnectionError):
        return "no_reply"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if len(reply) < PREAMBLE_SIZE:
        return "closed" if not reply else "refused:?"
    head_len, _ = PREAMBLE.unpack(reply[:PREAMBLE_SIZE])
    head = reply[PREAMBLE_SIZE : PREAMBLE_SIZE + head_len]
    if head:  # a handler's signed Refusal
        return classify_reply(head)
    code = reply[PREAMBLE_SIZE:].decode(errors="replace").split(":", 1)[0]  # `code: detail`
    return f"refused:{code}" if code in REASONS else "refused:?"


async def send_http(http: str, data: bytes) -> str:
    host, port = http.removeprefix("http://").rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(data)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(65536), 5.0)
        writer.close()
    except (TimeoutError, ConnectionError):
        return "no_reply"
    status_line, _, rest = reply.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return "closed" if not reply else "http:garbled"
    status = int(parts[1])
    if status < 400:
        return "accepted"
    body = rest.partition(b"\r\n\r\n")[2]
    with contextlib.suppress(ValueError):
        code = json.loads(body).get("error")
        if code:
            return f"http:{code}"
    return f"http_parser:{status}"  # refused by the HTTP parser, before the app: status only


async def fuzz(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from tests.node_kit import start_node  # a real peer node, the way tests start one
    from tests.p2p.endpoint_kit import make_hotkey

    proc, ends = start_target(root / "target")
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    findings: list[dict[str, Any]] = []
    healthz_failures = 0
    peer_task = None
    try:
        hotkey = make_hotkey(root / "wallets", "fuzzer")
        settings: dict[str, Any] = {
            "validator.audit": False,
            "admission.unbound_roles": ["orchestrator", "miner", "validator"],  # the target
        }
        peer, peer_task = await start_node(
            root / "peer", ["validator"], hotkey=hotkey, bootstrap=ends["p2p"], **settings
        )
        target = ends["peer_id"]
        assert peer.endpoint is not None
        deadline = time.monotonic() + 60
        while target not in peer.endpoint.sessions:
            if time.monotonic() > deadline:
                raise SystemExit("bench: the fuzzing peer was not admitted")
            await asyncio.sleep(0.2)
        transport = peer.endpoint.transport
        assert isinstance(transport, Libp2pTransport)
        bulk = transport.bulk_address_of(target)
        maker = FrameMaker(peer.endpoint._key, peer.endpoint.run, rng)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            before = await settled(proc.pid)
            counted_before = await scrape_refusals(session, ends["http"])
            for i in range(args.inputs):
                entrance = rng.random()
                if entrance < 0.7:
                    item = maker.make(
                        rng.choice(FRAME_KINDS), bulk=bool(bulk) and rng.random() < 0.4
                    )
                    outcome = await send_frame(transport, target, item)
                    record = {"entrance": "bulk" if item.bulk else "libp2p", "kind": item.kind,
                              "protocol": item.protocol, "head": bytes(item.frame.head).hex(),
                              "body": bytes(item.frame.body).hex()}  # fmt: skip
                    broke = outcome in ("refused:?", "no_reply") or (
                        item.expects_refusal and outcome == "accepted"
                    )
                elif entrance < 0.8 and bulk:
                    raw = raw_bulk(rng.choice(RAW_KINDS), rng)
                    outcome = await send_raw(bulk, raw.data, raw.expects_reply)
                    record = {"entrance": "bulk_raw", "kind": raw.kind, "data": raw.data.hex()}
                    broke = outcome == "refused:?" or (raw.expects_reply and outcome == "no_reply")
                else:
                    kind = rng.choice(HTTP_KINDS)
                    data = http_request(kind, rng)
                    outcome = await send_http(ends["http"], data)
                    record = {"entrance": "http", "kind": kind, "data": data.hex()}
                    broke = outcome in ("no_reply", "http:garbled", "http:internal_error")
                outcomes[outcome] += 1
                if i % 50 == 49:
                    try:
                        async with session.get(f"{ends['http']}/healthz") as response:
                            healthy = response.status == 200
                    except (aiohttp.ClientError, TimeoutError):
                        healthy = False
                    healthz_failures += not healthy
                    broke = broke or not healthy
                if proc.poll() is not None:
                    findings.append({**record, "outcome": "crash"})
                    break
                if broke:
                    findings.append({**record, "outcome": outcome, "error": LAST_ERROR[0]})
            during = proc_figures(proc.pid) if proc.poll() is None else {}
            counted = await scrape_refusals(session, ends["http"]) - counted_before
    except BaseException:
        proc.kill()  # never leave the target running
        raise
    finally:
        if peer_task is not None:
            peer_task.cancel()
            await asyncio.gather(peer_task, return_exceptions=True)
    await asyncio.sleep(3)
    after = proc_figures(proc.pid) if proc.poll() is None else {}
    crashed = proc.poll() is not None
    if not crashed:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    if args.corpus and findings:
        args.corpus.mkdir(parents=True, exist_ok=True)
        with (args.corpus / f"seed{args.seed}.jsonl").open("a") as out:
            out.writelines(json.dumps(f) + "\n" for f in findings)
    refused = {
        k.removeprefix("refused:"): v for k, v in outcomes.items() if k.startswith("refused:")
    }
    answered_refusals = sum(v for k, v in refused.items() if k != "?")
    return {
        "inputs": sum(outcomes.values()),
        "seed": args.seed,
        "crashes": int(crashed),
        "exit_code": proc.returncode,
        "healthz_failures": healthz_failures,
        "refusals_without_reason": refused.get("?", 0) + outcomes["no_reply"],
        # aiohttp's HTTP parser answers a request it cannot parse with 400 and its message,
        # before any handler of the node runs (no JSON reason code there)
        "http_parser_rejections": sum(
            v for k, v in outcomes.items() if k.startswith("http_parser")
        ),
        "refusals": dict(sorted(refused.items(), key=lambda kv: -kv[1])),
        "outcomes": dict(outcomes),
        "refusals_answered": answered_refusals,
        "refusals_counted": counted,
        "all_refusals_counted": counted >= answered_refusals,
        "node": {"before": before, "after_inputs": during, "after_peer_left": after},
        "findings": findings[:20],
        "findings_total": len(findings),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tessera-fuzz-") as tmp:
        result = asyncio.run(fuzz(args, Path(tmp)))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
