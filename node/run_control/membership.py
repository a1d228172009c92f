"""Keeps the orchestrator's registry in step with admitted miners and tells each its stage.

A miner is registered when its Hello admitted it (the endpoint's sessions carry its verified
hotkey and declared capacity), heartbeats while its session lives, and is marked gone when the
session drops. Each active miner must acknowledge an `Assign` for the stage the registry gave it
(and the stage's newest checkpoint) before routes use that stage; acknowledged assignments are
kept in LMDB, so a restarted orchestrator does not make miners reload.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from node.orchestration import MinerState, Orchestrator
from node.run_control.history import Assignment, RunHistory
from p2p.endpoint import Endpoint
from p2p.errors import P2PError
from p2p.messages import Assign

log = logging.getLogger(__name__)
STANDBY = -1


class Membership:
    def __init__(
        self,
        orchestrator: Orchestrator,
        endpoint: Endpoint,
        history: RunHistory,
        spec: dict[str, Any],
        window: Callable[[], int],
        *,
        assign_timeout_s: float,
        retry_s: float = 5.0,
    ) -> None:
        self._orch = orchestrator
        self._endpoint = endpoint
        self._history = history
        self._spec = spec
        self._window = window
        self._timeout = assign_timeout_s
        self._retry_s = retry_s
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._failed_at: dict[str, float] = {}
        self.counters: Counter[str] = Counter()

    def sync(self) -> None:
        """Registers newly admitted miners, refreshes live ones, marks vanished ones gone."""
        sessions = {p: s for p, s in self._endpoint.sessions.items() if "miner" in s.roles}
        known = {m.peer_id: m for m in self._orch.miners()}
        for peer, session in sessions.items():
            miner = known.get(peer)
            live = miner is not None and miner.state is not MinerState.GONE
            if live and self._orch.heartbeat(peer) is not None:
                continue
            if session.hotkey is None:
                self.counters["unbound_miner"] += 1
                continue
            self._orch.register_miner(peer, session.hotkey, session.capacity or 1.0)
            self._history.set_assignment(peer, None)  # a new session: its stage state is unknown
            self.counters["registered"] += 1
        for peer, miner in known.items():
            if miner.state is not MinerState.GONE and peer not in sessions:
                self._orch.mark_gone(peer)
                self._history.set_assignment(peer, None)
                self.counters["gone"] += 1

    def desired(self) -> dict[str, Assignment]:
        """What each live miner should hold: its stage and the checkpoint it goes on from (its own
        post-merge checkpoint of the last window when it merged, else the stage's newest)."""
        weights, merged = self._history.starting_points()
        out = {}
        for miner in self._orch.miners():
            if miner.state is MinerState.GONE:
                continue
            stage = STANDBY if miner.stage is None else miner.stage
            own = merged.get(miner.peer_id)
            digest = own[1] if own is not None and own[0] == stage else weights.get(stage, "")
            out[miner.peer_id] = Assignment(stage, digest)
        return out

    def acknowledged(self) -> set[str]:
        """Active miners holding a stage that acknowledged their current assignment: the only
        ones routes may use (a miner being re-assigned may still hold other weights)."""
        desired = self.desired()
        out = set()
        for miner in self._orch.miners():
            holds = miner.state is MinerState.ACTIVE and miner.stage is not None
            if holds and self._history.assignment(miner.peer_id) == desired.get(miner.peer_id):
                out.add(miner.peer_id)
        return out

    def ready(self, acknowledged: set[str] | None = None) -> bool:
        """Every stage has an active miner that acknowledged its current assignment."""
        acked = self.acknowledged() if acknowledged is None else acknowledged
        stages = {m.stage for m in self._orch.miners() if m.peer_id in acked}
        return len(stages) == self._orch.config.assignment.n_stages

    def assign_pending(self, now: float) -> None:
        """Starts an Assign to every miner whose acknowledged assignment is out of date."""
        for peer, want in self.desired().items():
            if peer in self._sending or self._history.assignment(peer) == want:
                continue
            if now - self._failed_at.get(peer, -1e9) < self._retry_s:
                continue
            task = asyncio.create_task(self._assign(peer, want, now), name=f"assign/{peer[-8:]}")
            self._sending[peer] = task

    def forget(self, peer_id: str) -> None:
        """The miner said it does not hold its stage (e.g. it restarted): assign it again."""
        self._history.set_assignment(peer_id, None)

    async def close(self) -> None:
        for task in self._sending.values():
            task.cancel()
        await asyncio.gather(*self._sending.values(), return_exceptions=True)

    async def _assign(self, peer: str, want: Assignment, now: float) -> None:
        msg = Assign(window=self._window(), stage=want.stage, spec=self._spec, weights=want.weights)
        try:
            await self._endpoint.request(peer, msg, timeout=self._timeout)
        except (P2PError, TimeoutError) as exc:  # Refused is a P2PError too
            self.counters["assign_failed"] += 1
            self._failed_at[peer] = now
            log.warning("assign stage %s to %s failed: %s", want.stage, peer, exc)
        else:
            if self.desired().get(peer) == want:
                self._history.set_assignment(peer, want)
            self.counters["assigned"] += 1
            log.info("miner %s holds stage %s", peer, want.stage)
        finally:
            self._sending.pop(peer, None)
