"""Chain role (`--role chain`): the devnet's stand-in for subtensor, serving one subnet.

Blocks follow the wall clock from the chain's genesis (`block_time_s` each; kept in LMDB, so a
restarted chain goes on counting from where it was), and a Yuma epoch runs every `tempo` blocks
(`node.chain.ledger`). Extrinsics (`ChainCall`) are checked before they touch the ledger: the
subnet, the hotkey's signature over the call, a nonce above the hotkey's last one; then the call
runs, and the reply names the block it was included at or the chain's error. Queries
(`ChainQuery`) return views of the subnet. `/status` shows the block, uids, epochs and counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Any

from node.chain.config import DevnetChainConfig
from node.chain.ledger import DevnetLedger
from node.chain.records import ChainError, ChainFault
from node.chain.views import view
from node.roles.base import RoleComponent, RoleContext
from p2p.admission import PeerSession
from p2p.chain_messages import ChainCall, ChainQuery, ChainResult, ChainView, extrinsic_payload
from p2p.messages import Message
from p2p.refusals import Reason, Refused


class ChainComponent(RoleComponent[DevnetChainConfig]):
    name = "chain"

    def __init__(self, config: DevnetChainConfig, ctx: RoleContext) -> None:
        super().__init__(config, ctx)
        self.ledger = DevnetLedger(ctx.store, config.netuid, config.params)
        self._genesis = self.ledger.genesis(time.time(), config.stakes)
        self.counters: Counter[str] = Counter()
        ctx.endpoint.register(ChainCall, self.on_call)
        ctx.endpoint.register(ChainQuery, self.on_query)

    def block(self) -> int:
        return int((time.time() - self._genesis) / self.config.block_time_s)

    async def run(self) -> None:
        while True:
            if self.ledger.maybe_epoch(self.block()) is not None:
                self.counters["epochs"] += 1
            next_block = self._genesis + (self.block() + 1) * self.config.block_time_s
            await asyncio.sleep(max(next_block - time.time(), 0.0))

    async def on_call(self, msg: ChainCall, peer: PeerSession) -> Message:
        block = self.block()
        try:
            self._check(msg)
            value = self._dispatch(msg, block)
        except ChainError as exc:
            self.counters[f"{msg.call}/{exc.fault.value}"] += 1
            return ChainResult(ok=False, block=block, fault=exc.fault.value, detail=exc.detail)
        self.counters[f"{msg.call}/ok"] += 1
        return ChainResult(ok=True, block=block, value=value)

    def _check(self, msg: ChainCall) -> None:
        from bittensor_core import Keypair  # the SDK's sr25519 check

        if msg.netuid != self.config.netuid:
            raise ChainError(
                ChainFault.WRONG_SUBNET, f"this chain keeps subnet {self.config.netuid}"
            )
        payload = extrinsic_payload(msg.netuid, msg.call, msg.args, msg.hotkey, msg.nonce)
        try:
            ok = Keypair(ss58_address=msg.hotkey).verify(payload, msg.signature)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ChainError(ChainFault.BAD_SIGNATURE, f"not signed by {msg.hotkey}")
        self.ledger.take_nonce(msg.hotkey, msg.nonce)

    def _dispatch(self, msg: ChainCall, block: int) -> int:
        a, hotkey, ledger = msg.args, msg.hotkey, self.ledger
        try:
            match msg.call:
                case "register":
                    return ledger.register(hotkey, str(a.get("coldkey", "")), block)
                case "serve":
                    ledger.serve(hotkey, str(a["endpoint"]))
                case "set_weights":
                    ledger.set_weights(hotkey, _weights(a), block, _mechid(a))
                case "commit_weights":
                    ledger.commit_weights(hotkey, bytes(a["digest"]), block, _mechid(a))
                case "reveal_weights":
                    salt = bytes(a["salt"])
                    ledger.reveal_weights(hotkey, _weights(a), salt, block, _mechid(a))
                case _:
                    raise ChainError(ChainFault.MALFORMED, f"unknown call {msg.call!r}")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ChainError(ChainFault.MALFORMED, f"{msg.call}: {exc!r}") from None
        return -1

    async def on_query(self, msg: ChainQuery, peer: PeerSession) -> Message:
        if msg.netuid != self.config.netuid and msg.what != "block":  # blocks are chain-wide
            raise Refused(Reason.NOT_FOUND, f"this chain keeps subnet {self.config.netuid}")
        block = self.block()
        try:
            data = view(self.ledger, msg.what, block)
        except KeyError:
            raise Refused(Reason.MALFORMED, f"unknown view {msg.what!r}") from None
        self.counters[f"query/{msg.what}"] += 1
        return ChainView.of(block, data)

    def status(self) -> dict[str, Any]:
        graph = self.ledger.metagraph(self.block())
        totals = self.ledger.totals()
        return {
            "netuid": self.config.netuid,
            "block": graph.block,
            "uids": len(graph.neurons),
            "last_epoch": self.ledger.last_epoch(),
            "epochs": self.counters["epochs"],
            "neurons": [
                {
                    **dataclasses.asdict(n),
                    **{f"{k}_emission_total": v for k, v in totals.get(n.hotkey, {}).items()},
                }
                for n in graph.neurons
            ],
            "counters": dict(self.counters),
        }


def _mechid(args: dict[str, Any]) -> int:
    value = args.get("mechid", 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("mechid must be an integer")
    return value


def _weights(args: dict[str, Any]) -> dict[int, float]:
    uids, values = list(args["uids"]), list(args["weights"])
    if len(uids) != len(values) or len(set(uids)) != len(uids):
        raise ValueError("one weight per distinct uid")
    return {int(u): float(w) for u, w in zip(uids, values, strict=True)}
