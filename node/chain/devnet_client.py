"""`DevnetChain`: the `ChainClient` of a devnet, talking to its `--role chain` node over p2p.

Extrinsics are signed by the node's hotkey (`p2p.chain_messages.extrinsic_payload`) with a nonce
from a microsecond clock (monotonic across restarts); a refused one raises the chain's error.
Under commit-reveal `set_weights` commits and keeps the weights and salt, and `reveal_due`
reveals them in their reveal epoch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from node.chain.ledger import commit_digest
from node.chain.records import ChainError, ChainFault, Hyperparams, Metagraph, Neuron
from p2p.binding import HotkeySigner
from p2p.chain_messages import ChainCall, ChainQuery, ChainResult, ChainView, extrinsic_payload
from p2p.endpoint import Endpoint
from p2p.errors import P2PError

PARAMS_TTL_S = 12.0


class DevnetChain:
    def __init__(
        self, endpoint: Endpoint, chain_peer: str, signer: HotkeySigner, *, timeout: float = 10.0
    ) -> None:
        self._ep = endpoint
        self._peer = chain_peer
        self._signer = signer
        self._timeout = timeout
        self._last_nonce = 0
        self._params: dict[int, tuple[float, Hyperparams]] = {}
        self._pending: dict[tuple[int, int], tuple[dict[int, float], bytes, int]] = {}
        """Per (subnet, mechanism), weights committed and not yet revealed: (weights, salt,
        commit block)."""

    @property
    def hotkey(self) -> str:
        return self._signer.ss58_address

    async def block(self) -> int:
        return (await self._view(0, "block"))[0]

    async def metagraph(self, netuid: int) -> Metagraph:
        block, data = await self._view(netuid, "metagraph")
        neurons = tuple(Neuron(**n) for n in data["neurons"])
        return Metagraph(netuid=netuid, block=block, neurons=neurons)

    async def hyperparams(self, netuid: int) -> Hyperparams:
        """The subnet's hyperparameters (read again after `PARAMS_TTL_S`)."""
        cached = self._params.get(netuid)
        if cached is not None and time.monotonic() - cached[0] < PARAMS_TTL_S:
            return cached[1]
        params = Hyperparams(**(await self._view(netuid, "hyperparams"))[1])
        self._params[netuid] = (time.monotonic(), params)
        return params

    async def weights(self, netuid: int) -> dict[int, dict[int, int]]:
        data = (await self._view(netuid, "weights"))[1]
        return {int(v): {int(u): int(w) for u, w in row.items()} for v, row in data.items()}

    async def register(self, netuid: int) -> int:
        return (await self._call(netuid, "register", {})).value

    async def serve(self, netuid: int, endpoint: str) -> None:
        await self._call(netuid, "serve", {"endpoint": endpoint})

    async def set_weights(
        self, netuid: int, weights: Mapping[int, float], *, mechid: int = 0
    ) -> int:
        chosen = {int(u): float(w) for u, w in sorted(weights.items())}
        if not (await self.hyperparams(netuid)).commit_reveal:
            args = {"uids": list(chosen), "weights": list(chosen.values()), "mechid": mechid}
            return (await self._call(netuid, "set_weights", args)).block
        salt = os.urandom(16)
        digest = commit_digest(self.hotkey, chosen, salt)
        result = await self._call(netuid, "commit_weights", {"digest": digest, "mechid": mechid})
        self._pending[netuid, mechid] = (chosen, salt, result.block)
        return result.block

    async def reveal_due(self, netuid: int, mechid: int = 0) -> int | None:
        """Reveal the committed weights if their reveal epoch has come; the block, else None."""
        pending = self._pending.get((netuid, mechid))
        if pending is None:
            return None
        weights, salt, committed = pending
        params, block = await self.hyperparams(netuid), await self.block()
        if block // params.tempo < committed // params.tempo + params.reveal_period:
            return None
        uids = sorted(weights)
        args = {"uids": uids, "weights": [weights[u] for u in uids], "salt": salt, "mechid": mechid}
        del self._pending[netuid, mechid]
        return (await self._call(netuid, "reveal_weights", args)).block

    async def _call(self, netuid: int, call: str, args: dict[str, Any]) -> ChainResult:
        # From the microsecond clock, so that nodes sharing a hotkey (one per run) stay in order.
        nonce = self._last_nonce = max(self._last_nonce + 1, time.time_ns() // 1000)
        payload = extrinsic_payload(netuid, call, args, self.hotkey, nonce)
        msg = ChainCall(netuid=netuid, call=call, args=args, hotkey=self.hotkey, nonce=nonce,
                        signature=bytes(self._signer.sign(payload)))  # fmt: skip
        reply = await self._request(msg)
        if not isinstance(reply, ChainResult):
            raise ChainError(ChainFault.UNAVAILABLE, f"chain answered {type(reply).__name__}")
        if not reply.ok:
            fault = ChainFault(reply.fault) if reply.fault in set(ChainFault) else None
            raise ChainError(fault or ChainFault.MALFORMED, reply.detail)
        return reply

    async def _view(self, netuid: int, what: str) -> tuple[int, Any]:
        reply = await self._request(ChainQuery(netuid=netuid, what=what))
        if not isinstance(reply, ChainView):
            raise ChainError(ChainFault.UNAVAILABLE, f"chain answered {type(reply).__name__}")
        return reply.block, reply.data()

    async def _request(self, msg: ChainCall | ChainQuery) -> object:
        try:
            return await self._ep.request(self._peer, msg, timeout=self._timeout)
        except (P2PError, TimeoutError, OSError) as exc:
            raise ChainError(ChainFault.UNAVAILABLE, str(exc)) from None
