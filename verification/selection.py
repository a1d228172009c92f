"""Audit draws that miners cannot predict but anyone can check afterwards (commit / reveal).

Before window w opens, a validator picks a random 32-byte secret and publishes
`commitment(validator, w, secret)` = blake3(DOMAIN ‖ len ‖ validator ‖ w ‖ secret). After w
closes it reveals the secret; `verify_reveal` checks it against the commitment, and `draw` turns
(secret, w, the window's miners with their unit counts) into the audited miners and units. The
draw is a pure function of its inputs, so a miner or the orchestrator can re-run it to see that the
validator audited what the secret chose, not whom it liked; a miner cannot know in advance
because the secret is unknown until the window is over, and the validator cannot steer the draw
after the fact because the secret was committed to first.

Randomness: a blake3 counter-mode stream keyed by the secret, integers by rejection sampling
(no modulo bias), samples without replacement by a partial Fisher-Yates shuffle. Each miner's
units come from its own stream (labelled by its peer id), so they do not depend on who else drew.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import blake3

DOMAIN = b"tessera/audit-commitment/1"
DRAW_DOMAIN = b"tessera/audit-draw/1"
SECRET_BYTES = 32


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def _frame(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def commitment(validator: str, window: int, secret: bytes) -> bytes:
    """The 32-byte commitment a validator publishes before `window`."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the secret must be {SECRET_BYTES} bytes")
    if window < 0:
        raise ValueError("window must be >= 0")
    data = _frame(DOMAIN, validator.encode(), window.to_bytes(8, "big"), secret)
    return blake3.blake3(data).digest()


def verify_reveal(commitment_: bytes, validator: str, window: int, secret: bytes) -> bool:
    """Whether `secret` is what `validator` committed to for `window`."""
    if len(secret) != SECRET_BYTES or window < 0:
        return False
    return hmac.compare_digest(commitment(validator, window, secret), commitment_)


class Stream:
    """Deterministic uniform integers from (secret, window, label)."""

    def __init__(self, secret: bytes, window: int, label: bytes) -> None:
        self._key = blake3.blake3(
            _frame(DRAW_DOMAIN, secret, window.to_bytes(8, "big"), label)
        ).digest()
        self._counter = 0
        self._buffer = b""

    def _u64(self) -> int:
        if not self._buffer:
            block = blake3.blake3(self._counter.to_bytes(8, "big"), key=self._key).digest(64)
            self._counter += 1
            self._buffer = block
        value, self._buffer = self._buffer[:8], self._buffer[8:]
        return int.from_bytes(value, "big")

    def below(self, n: int) -> int:
        """Uniform in [0, n)."""
        if not 0 < n <= 1 << 64:
            raise ValueError(f"n must be in 1..2**64, got {n}")
        limit = (1 << 64) - (1 << 64) % n
        while True:
            value = self._u64()
            if value < limit:
                return value % n

    def sample(self, n: int, k: int) -> list[int]:
        """k distinct integers of [0, n), in draw order (partial Fisher-Yates)."""
        k = min(k, n)
        pool = list(range(n))
        for i in range(k):
            j = i + self.below(n - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


@dataclass(frozen=True, slots=True)
class MinerDraw:
    peer_id: str
    units: tuple[int, ...]
    """Indices into the miner's receipt list of the window (ordered by sequence number),
    ascending."""


@dataclass(frozen=True, slots=True)
class AuditDraw:
    window: int
    miners: tuple[MinerDraw, ...]
    """Ascending by peer id."""

    def peers(self) -> list[str]:
        return [m.peer_id for m in self.miners]


def draw(
    secret: bytes,
    window: int,
    miners: Iterable[tuple[str, int]],
    *,
    miners_per_window: int,
    units_per_miner: int | None,
) -> AuditDraw:
    """Which miners (up to `miners_per_window`) and which of their units are audited.

    `miners`: (peer id, number of units) of every miner that worked in the window, in any order
    (they are sorted by peer id first, so the draw does not depend on the order given).
    `units_per_miner` None: all of a drawn miner's units.
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the secret must be {SECRET_BYTES} bytes")
    if miners_per_window < 0 or (units_per_miner is not None and units_per_miner < 0):
        raise ValueError("miners_per_window and units_per_miner must be >= 0")
    table = sorted(miners)
    ids = [peer for peer, _ in table]
    if len(set(ids)) != len(ids):
        raise ValueError("a miner is listed twice")
    if any(n < 0 for _, n in table):
        raise ValueError("unit counts must be >= 0")
    chosen = Stream(secret, window, b"miners").sample(len(table), miners_per_window)
    picks = []
    for index in sorted(chosen):
        peer, n_units = table[index]
        if units_per_miner is None or units_per_miner >= n_units:
            units = tuple(range(n_units))
        else:
            stream = Stream(secret, window, b"units:" + peer.encode())
            units = tuple(sorted(stream.sample(n_units, units_per_miner)))
        picks.append(MinerDraw(peer, units))
    return AuditDraw(window, tuple(picks))
