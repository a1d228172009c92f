"""Sending a computed tensor to the route's next hop, retrying within a deadline.

Transport failures, timeouts and transient refusals (the neighbour is over capacity or rate
limited) are retried with backoff until `deadline_s` has passed; any other refusal is final.
Receivers acknowledge a duplicate of a message they already took, so a retry after a lost reply
is safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.messages import Message
from p2p.refusals import Reason, Refused

log = logging.getLogger(__name__)
TRANSIENT = frozenset({Reason.OVER_CAPACITY, Reason.RATE_LIMITED})


async def send_with_retry(
    endpoint: Endpoint,
    peer_id: str,
    msg: Message,
    *,
    deadline_s: float,
    counters: Counter[str],
    what: str,
) -> bool:
    """Deliver `msg` to `peer_id`; False (counted and logged) if it could not be delivered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    delay = 0.05
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - loop.time()
        try:
            await endpoint.request(peer_id, msg, timeout=max(remaining, 0.1))
            counters[f"{what}_sent"] += 1
            return True
        except Refused as exc:
            if exc.reason not in TRANSIENT:
                counters[f"{what}_refused"] += 1
                log.warning("%s to %s refused: %s", what, peer_id, exc)
                return False
            error: Exception = exc
        except (P2PError, TimeoutError, OSError) as exc:
            error = exc
        remaining = deadline - loop.time()
        if remaining <= delay:
            counters[f"{what}_failed"] += 1
            log.warning("%s to %s failed after %d attempts: %s", what, peer_id, attempt, error)
            return False
        counters[f"{what}_retries"] += 1
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
