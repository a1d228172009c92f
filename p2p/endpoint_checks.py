"""The checks on a request's head that run before its body is read (cheapest first)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from p2p.admission import PeerSession
from p2p.body_codec import raw_size
from p2p.envelope import Header, signature_ok
from p2p.limits import LimitsConfig, RateLimiter, ReplayGuard
from p2p.messages import Hello, Message
from p2p.refusals import Reason, Refused
from p2p.session_keys import tag_ok
from p2p.tensors import check_spec


class HeadChecker:
    def __init__(
        self,
        run: str | None,
        limits: LimitsConfig,
        sessions: Mapping[str, PeerSession],
        clock: Callable[[], float],
    ) -> None:
        """`run` None: envelopes of any run pass (a subnet-wide node)."""
        self._run = run
        self._sessions = sessions
        self._clock = clock
        self._replay = ReplayGuard(limits)
        self._rates = RateLimiter()

    def check(
        self,
        cls: type[Message],
        peer: str | None,
        header: Header,
        part: bytes,
        sig: bytes,
        body_len: int,
    ) -> None:
        if header.type_id != cls.type_id:
            raise Refused(Reason.UNKNOWN_TYPE, f"type {header.type_id} on {cls.protocol}")
        if header.version != cls.version:
            raise Refused(Reason.UNSUPPORTED_VERSION, f"{cls.__name__} v{header.version}")
        if self._run is not None and header.run != self._run:
            raise Refused(Reason.WRONG_RUN, f"run {header.run!r}, this node is in {self._run!r}")
        size = max(body_len, header.body_len)
        if size > cls.max_body:
            raise Refused(Reason.TOO_LARGE, f"{size} bytes over {cls.max_body}")
        if body_len != header.body_len:
            raise Refused(
                Reason.MALFORMED, f"body of {body_len} bytes, head says {header.body_len}"
            )
        if header.encoding is None:
            check_spec(
                header.dtype, header.shape, body_len, dtypes=cls.dtypes, max_rank=cls.max_rank
            )
        else:
            check_encoded_spec(cls, header, body_len)
        if header.mac:
            session = self._sessions.get(header.sender)
            if session is None:
                raise Refused(Reason.UNKNOWN_SENDER, f"{header.sender} has not been admitted")
            if session.keys is None or not tag_ok(session.keys.recv, part, sig):
                raise Refused(Reason.BAD_SIGNATURE, f"head not tagged by {header.sender}'s session")
        elif not signature_ok(header, part, sig):
            raise Refused(Reason.BAD_SIGNATURE, f"head not signed by {header.sender}")
        if peer is not None and peer != header.sender:
            raise Refused(Reason.SENDER_MISMATCH, f"{peer} relayed a message of {header.sender}")
        if cls is not Hello and header.sender not in self._sessions:
            raise Refused(Reason.UNKNOWN_SENDER, f"{header.sender} has not been admitted")
        now = self._clock()
        self._replay.check(header.sender, header.seq, header.ts, now)
        if not self._rates.allow(header.sender, header.type_id, cls.rate_per_s, cls.burst, now):
            raise Refused(Reason.RATE_LIMITED, f"over {cls.rate_per_s}/s for {cls.__name__}")
        self._replay.commit(header.sender, header.seq)


def check_encoded_spec(cls: type[Message], header: Header, body_len: int) -> None:
    """A deflated body: allowed for its message and dtype, smaller than the tensor it inflates
    to, and that tensor within the message's limits."""
    dtype, shape = header.dtype, header.shape
    if dtype is None or shape is None or dtype not in cls.deflate_dtypes:
        raise Refused(Reason.BAD_DTYPE, f"{cls.__name__} bodies of {dtype} are not deflated")
    if len(shape) > cls.max_rank:
        raise Refused(Reason.BAD_SHAPE, f"rank {len(shape)} exceeds {cls.max_rank}")
    raw = raw_size(dtype, shape)
    if raw > cls.max_body:
        raise Refused(Reason.TOO_LARGE, f"inflates to {raw} bytes, over {cls.max_body}")
    if not 0 < body_len < raw:
        raise Refused(Reason.BAD_SHAPE, f"a deflated body of {body_len} for {raw} raw bytes")
