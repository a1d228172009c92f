"""Says Hello to every newly connected peer (mutual admission) and heartbeats admitted peers.

Admitted sessions of peers that disconnected are dropped, so `/status` lists exactly the peers
this node currently works with. Failures are counted and retried on the next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from node.service import Service
from p2p.admission import PeerSession
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.host import P2PHost
from p2p.messages import Ack, Heartbeat, Message
from p2p.refusals import Reason, Refused

log = logging.getLogger(__name__)
OTHER_RUN_RETRY_S = 300.0


class Greeter(Service):
    name = "greeter"

    def __init__(
        self,
        endpoint: Endpoint,
        host: P2PHost,
        *,
        interval_s: float = 1.0,
        heartbeat_every: int = 5,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._host = host
        self._interval_s = interval_s
        self._heartbeat_every = heartbeat_every
        self._timeout_s = timeout_s
        self.counters: Counter[str] = Counter()
        self.last_heartbeat: dict[str, float] = {}
        self._other_run: dict[str, float] = {}
        """Peers that refused our Hello as `wrong_run` (another run on the same subnet), and
        when: greeted again only after `OTHER_RUN_RETRY_S`."""
        endpoint.register(Heartbeat, self._on_heartbeat)

    async def run(self) -> None:
        round_no = 0
        while True:
            await self.round(heartbeat=round_no % self._heartbeat_every == 0)
            round_no += 1
            await asyncio.sleep(self._interval_s)

    async def round(self, *, heartbeat: bool) -> None:
        live = {p.peer_id for p in self._host.connected_peers()}
        sessions = self._endpoint.sessions
        for gone in set(sessions) - live:
            del sessions[gone]
        now = asyncio.get_running_loop().time()
        jobs = [
            self._greet(peer)
            for peer in live
            if peer not in sessions
            and now - self._other_run.get(peer, -OTHER_RUN_RETRY_S) >= OTHER_RUN_RETRY_S
        ]
        if heartbeat:
            jobs += [self._beat(peer) for peer in live if peer in sessions]
        await asyncio.gather(*jobs)

    async def _greet(self, peer: str) -> None:
        try:
            await self._endpoint.hello(peer, timeout=self._timeout_s)
            self.counters["hello_ok"] += 1
        except Refused as exc:
            self.counters["hello_failed"] += 1
            if exc.reason is Reason.WRONG_RUN:
                self._other_run[peer] = asyncio.get_running_loop().time()
            log.debug("hello to %s refused: %s", peer, exc)
        except P2PError as exc:
            self.counters["hello_failed"] += 1
            log.debug("hello to %s failed: %s", peer, exc)

    async def _beat(self, peer: str) -> None:
        try:
            await self._endpoint.request(peer, Heartbeat(), timeout=self._timeout_s)
            self.counters["heartbeat_ok"] += 1
        except P2PError as exc:
            self.counters["heartbeat_failed"] += 1
            log.debug("heartbeat to %s failed: %s", peer, exc)

    async def _on_heartbeat(self, msg: Heartbeat, peer: PeerSession) -> Message:
        self.last_heartbeat[peer.peer_id] = asyncio.get_running_loop().time()
        return Ack()
