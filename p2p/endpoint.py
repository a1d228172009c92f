"""The protocol core: typed request/response over an injected transport, with every check.

A component registers `async def on_x(msg, peer) -> reply` for a message class; the endpoint
serves its protocol id on the transport and runs, in order: head decode, type/version/run, size and
tensor spec, signature, sender binding to the channel, admission, staleness and replay, rate; then
after the body arrives: digest, message decode, NaN/Inf. Any failure is answered with a signed
Refusal carrying a reason code, counted, and logged once per peer and interval. The endpoint does
no I/O itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from p2p.admission import AdmissionPolicy, PeerSession, verify_hello_binding
from p2p.endpoint_checks import HeadChecker
from p2p.envelope import Header, MalformedMessage, SeqCounter, decode_head, digest, open_frame, seal
from p2p.identity import NodeKey
from p2p.limits import LimitsConfig
from p2p.messages import Hello, Message, Refusal, Welcome
from p2p.refusals import Reason, RefusalLedger, Refused
from p2p.registry import REPLIES
from p2p.session_keys import SessionSecret
from p2p.tensors import check_finite
from p2p.transport import Frame, SupportsBulkLane, Transport, nbytes
from store.errors import MapFullError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)
_SIGNED_ALWAYS = (Hello, Welcome, Refusal)
Handler = Callable[[Any, PeerSession], Awaitable[Message]]


class Endpoint:
    def __init__(
        self,
        key: NodeKey,
        run: str,
        transport: Transport,
        *,
        admission: AdmissionPolicy,
        hello: Callable[[], Hello],
        limits: LimitsConfig | None = None,
        clock: Callable[[], float] = time.time,
        any_run: bool = False,
    ) -> None:
        """`any_run`: a subnet-wide node (the chain) that serves the peers of every run: it takes
        envelopes of any run and answers, and later asks, each peer in the peer's own run."""
        self._key = key
        self.run = run
        self.any_run = any_run
        self.peer_runs: dict[str, str] = {}
        """The run each peer spoke in (`any_run` only)."""
        self._transport = transport
        self._admission = admission
        self._hello = hello
        self._clock = clock
        self._seq = SeqCounter()
        self._secret = SessionSecret()
        self.sessions: dict[str, PeerSession] = {}
        self.refusals = RefusalLedger()
        self._checks = HeadChecker(
            None if any_run else run, limits or LimitsConfig(), self.sessions, clock
        )
        self._pending_hello: dict[str, asyncio.Future[PeerSession]] = {}
        self.rehellos = 0
        """Requests asked again after greeting a peer that did not know us (or our keys)."""
        self.seconds: defaultdict[str, float] = defaultdict(float)
        """Time spent sealing frames (encode, digest, tag or signature) and opening them (head
        checks, tag or signature, digest, decode), requests and replies alike."""
        self.register(Hello, self._on_hello)

    @property
    def peer_id(self) -> str:
        return self._key.peer_id

    @property
    def admission(self) -> AdmissionPolicy:
        return self._admission

    @property
    def transport(self) -> Transport:
        return self._transport

    def register(
        self, cls: type[M], handler: Callable[[M, PeerSession], Awaitable[Message]]
    ) -> None:
        self._transport.serve(cls.protocol, _Served(self, cls, handler))

    def seal(
        self, msg: Message, *, re: int | None = None, run: str | None = None, to: str | None = None
    ) -> tuple[Frame, int]:
        """The frame of `msg` and its seq: tagged with the session key shared with `to` when
        there is one (never Hello, Welcome and Refusal: they are read before or without a
        session), signed otherwise."""
        started = time.perf_counter()
        if re is not None:
            msg = dataclasses.replace(msg, re=re)  # type: ignore[call-arg]
        payload = msg.payload
        body = payload.data if payload is not None else b""
        seq = self._seq()
        header = Header(
            type_id=msg.type_id,
            version=msg.version,
            run=self.run if run is None else run,
            sender=self.peer_id,
            seq=seq,
            ts=self._clock(),
            digest=digest(body),
            body_len=nbytes(body),
            dtype=payload.dtype if payload else None,
            shape=payload.shape if payload else None,
            meta=msg.meta(),
            encoding=payload.encoding if payload else None,
        )
        frame = seal(self._key, header, body, mac_key=self._send_key(to, msg))
        self.seconds["seal"] += time.perf_counter() - started
        return frame, seq

    def _send_key(self, to: str | None, msg: Message) -> bytes | None:
        if to is None or isinstance(msg, _SIGNED_ALWAYS):
            return None
        session = self.sessions.get(to)
        return session.keys.send if session is not None and session.keys is not None else None

    def statement(self, msg: Message) -> bytes:
        """`msg` (without a tensor) as a signed head others can keep as evidence."""
        if msg.payload is not None:
            raise ValueError("a statement carries no tensor")
        return bytes(self.seal(msg)[0].head)

    async def request(self, peer_id: str, msg: Message, *, timeout: float = 30.0) -> Message:
        """Send `msg` to `peer_id` and return its typed reply; a refusal raises Refused.

        A peer that refuses us as `unknown_sender` (it has not taken our Welcome yet, or it
        restarted), or refuses a tagged frame's tag (it holds other session keys), is greeted
        again and asked once more."""
        if not isinstance(msg, Hello) and peer_id not in self.sessions:
            await self.hello(peer_id, timeout=timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sent_at = time.time()
        answer, tagged = await self._exchange(peer_id, msg, timeout)
        if isinstance(answer, Refusal) and not isinstance(msg, Hello):
            reason = _reason(answer.reason)
            if reason is Reason.UNKNOWN_SENDER or (reason is Reason.BAD_SIGNATURE and tagged):
                self.rehellos += 1
                session = self.sessions.get(peer_id)
                if session is None or session.admitted_at <= sent_at:
                    await self.hello(peer_id, timeout=max(deadline - loop.time(), 0.1))
                answer, _ = await self._exchange(peer_id, msg, max(deadline - loop.time(), 0.1))
        if isinstance(answer, Refusal):
            raise Refused(_reason(answer.reason), f"refused by {peer_id}: {answer.detail}")
        return answer

    async def _exchange(self, peer_id: str, msg: Message, timeout: float) -> tuple[Message, bool]:
        """One request and its opened reply; whether the request was tagged."""
        run = self.peer_runs.get(peer_id, self.run)
        tagged = self._send_key(peer_id, msg) is not None
        frame, seq = self.seal(msg, run=run, to=peer_id)
        reply = await self._transport.request(
            peer_id, msg.protocol, frame, timeout=timeout, bulk=msg.bulk
        )
        opened = time.perf_counter()
        try:
            session = self.sessions.get(peer_id)
            keys = session.keys if session is not None else None
            recv = keys.recv if keys is not None else None
            header, body = open_frame(reply, sender=peer_id, mac_key=recv)
            cls = REPLIES.get(header.type_id)
            other_run = header.run != run and cls is not Refusal  # a refusal may say wrong_run
            if cls is None or header.meta.get("re") != seq or other_run:
                raise Refused(Reason.MALFORMED, "reply does not answer this request")
            answer = cls.decode(header, body)
        except (Refused, MalformedMessage) as exc:
            reason = exc.reason if isinstance(exc, Refused) else Reason.MALFORMED
            self.refusals.record(peer_id, reason, f"bad reply: {exc}")
            raise Refused(reason, f"bad reply from {peer_id}: {exc}") from None
        finally:
            self.seconds["open"] += time.perf_counter() - opened
        return answer, tagged

    async def hello(self, peer_id: str, *, timeout: float = 30.0) -> PeerSession:
        """Introduce ourselves; the Welcome admits the peer to us as our Hello admits us to it."""
        pending = self._pending_hello.get(peer_id)
        if pending is None:
            pending = asyncio.ensure_future(self._do_hello(peer_id, timeout))
            self._pending_hello[peer_id] = pending
            pending.add_done_callback(lambda _: self._pending_hello.pop(peer_id, None))
        return await asyncio.shield(pending)

    async def _do_hello(self, peer_id: str, timeout: float) -> PeerSession:
        welcome = await self.request(peer_id, self._my_hello(), timeout=timeout)
        if not isinstance(welcome, Welcome):
            raise Refused(
                Reason.MALFORMED, f"{peer_id} answered Hello with {type(welcome).__name__}"
            )
        try:
            return self._admit(peer_id, welcome)
        except Refused as exc:
            self.refusals.record(peer_id, exc.reason, exc.detail)
            raise

    async def _on_hello(self, msg: Hello, peer: PeerSession) -> Message:
        self._admit(peer.peer_id, msg)
        mine = self._my_hello()
        return Welcome(
            roles=mine.roles,
            capacity=mine.capacity,
            binding=mine.binding,
            bulk_addr=mine.bulk_addr,
            agent=mine.agent,
            session_key=mine.session_key,
        )

    def _my_hello(self) -> Hello:
        return dataclasses.replace(self._hello(), session_key=self._secret.public_hex)

    def _admit(self, peer_id: str, intro: Hello | Welcome) -> PeerSession:
        run = self.peer_runs.get(peer_id, self.run)  # any_run: the run the peer spoke in
        hotkey = verify_hello_binding(intro.binding, peer_id=peer_id, run=run, now=self._clock())
        if not self._admission.allows(hotkey, list(intro.roles)):
            raise self._admission.refusal(hotkey, list(intro.roles))
        keys = self._secret.keys_with(self.peer_id, peer_id, intro.session_key)
        roles = tuple(intro.roles)
        session = PeerSession(peer_id, hotkey, roles, intro.capacity, intro.bulk_addr, keys=keys)
        self.sessions[peer_id] = session
        if intro.bulk_addr and isinstance(self._transport, SupportsBulkLane):
            self._transport.set_bulk_address(peer_id, intro.bulk_addr)
        return session

    def note_run(self, peer: str, run: str) -> None:
        """Remember the run `peer` speaks in (`any_run`); bounded: peers without a session are
        forgotten first once there are many (Hellos from strangers must not grow it)."""
        self.peer_runs[peer] = run
        if len(self.peer_runs) > 4 * max(len(self.sessions), 256):
            for other in [p for p in self.peer_runs if p not in self.sessions and p != peer]:
                del self.peer_runs[other]

    def refusal_frame(
        self, peer: str | None, exc: Refused, re: int, run: str | None = None
    ) -> Frame:
        self.refusals.record(peer, exc.reason, exc.detail)
        refusal = Refusal(reason=exc.reason.value, detail=exc.detail[:500])
        return self.seal(refusal, re=re, run=run if self.any_run else None)[0]


class _Served:
    """The FrameHandler of one message class on one endpoint."""

    def __init__(self, endpoint: Endpoint, cls: type[Message], handler: Handler) -> None:
        self._ep = endpoint
        self._cls = cls
        self._handler = handler
        self._checked: tuple[bytes, Header] | None = None
        """The head `check_head` passed last and its decoding, which `handle` of the same frame
        reuses (checked by identity: frames of other connections may come in between)."""

    def check_head(self, peer: str | None, head: bytes, body_len: int) -> Frame | None:
        started = time.perf_counter()
        try:
            return self._check_head(peer, head, body_len)
        finally:
            self._ep.seconds["open"] += time.perf_counter() - started

    def _check_head(self, peer: str | None, head: bytes, body_len: int) -> Frame | None:
        seq, run = 0, None
        try:
            header, part, sig = decode_head(head)
            seq, run = header.seq, (header.run if self._ep.any_run else None)
            self._ep._checks.check(self._cls, peer, header, part, sig, body_len)
            self._checked = (head, header)
        except MalformedMessage as exc:
            return self._ep.refusal_frame(peer, Refused(Reason.MALFORMED, str(exc)), seq, run)
        except Refused as exc:
            return self._ep.refusal_frame(peer or _sender(head), exc, seq, run)
        return None

    async def handle(self, peer: str | None, frame: Frame) -> Frame:
        checked, self._checked = self._checked, None
        if checked is not None and checked[0] is frame.head:
            header = checked[1]
        else:
            header = decode_head(frame.head)[0]  # check_head passed: decodes
        sender = header.sender
        run = header.run if self._ep.any_run else None
        if run is not None:
            self._ep.note_run(sender, run)
        try:
            opened = time.perf_counter()
            if nbytes(frame.body) != header.body_len or digest(frame.body) != header.digest:
                raise Refused(Reason.BAD_DIGEST, "body does not match the signed digest")
            msg = self._cls.decode(header, frame.body)
            if msg.payload is not None:
                check_finite(msg.payload)
            self._ep.seconds["open"] += time.perf_counter() - opened
            session = self._ep.sessions.get(sender) or PeerSession(sender, None, (), 0.0, "")
            reply = await self._handler(msg, session)
        except MalformedMessage as exc:
            refused = Refused(Reason.MALFORMED, str(exc))
            return self._ep.refusal_frame(sender, refused, header.seq, run)
        except Refused as exc:
            return self._ep.refusal_frame(sender, exc, header.seq, run)
        except MapFullError as exc:  # nothing is lost: the sender keeps what it sent
            refused = Refused(Reason.STORE_FULL, str(exc))
            return self._ep.refusal_frame(sender, refused, header.seq, run)
        except Exception as exc:  # a handler bug must not take the node down
            log.exception("handler for %s failed", self._cls.__name__)
            refusal = Refused(Reason.INTERNAL, type(exc).__name__)
            return self._ep.refusal_frame(sender, refusal, header.seq, run)
        return self._ep.seal(reply, re=header.seq, run=run, to=sender)[0]


def _sender(head: bytes) -> str | None:
    try:
        return decode_head(head)[0].sender
    except MalformedMessage:
        return None


def _reason(code: str) -> Reason:
    try:
        return Reason(code)
    except ValueError:
        return Reason.MALFORMED
