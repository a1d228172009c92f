"""Pieces shared by the libp2p lane and the bulk TCP lane: limits, counters, budgets, idle pools.

A transport-level refusal (frame over a cap, no handler for the protocol, handler crashed) is
answered with an *error notice*: a frame with an empty head whose body is `reason_code: detail`
in UTF-8.
Envelope heads are never empty, so the requester can tell a notice from a handler's reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from p2p.refusals import Reason
from p2p.transport import Frame, TransportError

K = TypeVar("K")
C = TypeVar("C")
MiB = 1024 * 1024
COUNTERS = (
    "streams_opened",
    "bulk_connections_opened",
    "frames_in",
    "frames_out",
    "bytes_in",
    "bytes_out",
    "refused_by_handler",
    "refused_too_large",
    "refused_mem_cap",
    "retries",
    "errors",
)
_MAX_NOTICE = 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class LaneLimits:
    """Timeouts and pool sizes of both lanes (caps on bytes live in HostConfig)."""

    idle_s: float = 120.0  # a server stream/connection waits this long for the next frame
    frame_s: float = 60.0  # head and body of a frame must arrive within this once it started
    write_grace_s: float = 10.0  # a stuck write may outlive its request's timeout by this much
    linger_s: float = 1.0  # after a refusal, how long the server waits for the peer to hang up
    pool_idle_s: float = 60.0  # idle client streams/connections older than this are closed
    pool_size: int = 32  # idle client streams/connections kept per (peer, protocol) or address


def error_notice(code: Reason, detail: str) -> Frame:
    """A transport-level refusal: `code: detail` (the code is a refusal reason code)."""
    return Frame(head=b"", body=f"{code.value}: {detail}".encode()[:_MAX_NOTICE])


def raise_if_notice(reply: Frame, peer: str) -> Frame:
    """`reply` unchanged, or TransportError if it is an error notice from `peer`."""
    if reply.head:
        return reply
    reason = bytes(reply.body[:_MAX_NOTICE]).decode(errors="replace")
    raise TransportError(f"{peer} refused the frame: {reason}")


class InflightBudget:
    """Body bytes held per remote (read but not yet answered), capped per remote."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held: dict[str, int] = {}

    def reserve(self, remote: str, size: int) -> bool:
        held = self._held.get(remote, 0)
        if held + size > self.cap:
            return False
        self._held[remote] = held + size
        return True

    def release(self, remote: str, size: int) -> None:
        left = self._held.get(remote, 0) - size
        if left > 0:
            self._held[remote] = left
        else:
            self._held.pop(remote, None)

    def held(self, remote: str) -> int:
        return self._held.get(remote, 0)


class IdlePool(Generic[K, C]):
    """Idle connections per key, newest first; at most `size` per key, none older than `max_age`.

    Not thread-safe: each lane uses its pool from one thread only.
    """

    def __init__(
        self, size: int, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._max_age = max_age
        self._clock = clock
        self._idle: dict[K, list[tuple[float, C]]] = {}

    def take(self, key: K) -> tuple[C | None, list[C]]:
        """(the newest fresh connection or None, expired connections for the caller to close)."""
        entries = self._idle.get(key)
        if not entries:
            return None, []
        cutoff = self._clock() - self._max_age
        stale = 0  # entries are oldest first
        while stale < len(entries) and entries[stale][0] < cutoff:
            stale += 1
        expired = [conn for _, conn in entries[:stale]]
        del entries[:stale]
        conn = entries.pop()[1] if entries else None
        if not entries:
            del self._idle[key]
        return conn, expired

    def give(self, key: K, conn: C) -> C | None:
        """Keep `conn` idle; returns a connection evicted to make room (to close), if any."""
        entries = self._idle.setdefault(key, [])
        entries.append((self._clock(), conn))
        return entries.pop(0)[1] if len(entries) > self._size else None

    def drain(self) -> list[C]:
        conns = [conn for entries in self._idle.values() for _, conn in entries]
        self._idle.clear()
        return conns

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._idle.values())
