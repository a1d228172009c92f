"""A validator setting weights: every `interval_blocks` blocks it maps its score book's miners
(peer ids, through the hotkeys bound to them) to uids in the metagraph, normalises with the
owner burn (`verification.weights.uid_weights`) and sets the weights through the node's chain
link (committing them under commit-reveal, and revealing when due). Each attempt's outcome is
counted (`ok`, `nothing_to_set`, `not_registered`, the chain's error, ...) and the last
weights are kept for `/status`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from node.chain.client import ChainClient
from node.chain.devnet_client import DevnetChain
from node.chain.link import ChainLink
from node.chain.records import ChainError
from verification.weights import uid_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class WeightPolicy:
    interval_blocks: int = 100
    burn_uid: int | None = None
    burn_fraction: float = 0.0
    mechid: int = 0
    """The subnet mechanism the weights are set on (the validator's run)."""


class WeightSetter:
    def __init__(
        self,
        link: ChainLink,
        scores: Callable[[], Mapping[str, float]],
        hotkey_of: Callable[[str], str | None],
        policy: WeightPolicy,
    ) -> None:
        self._link = link
        self._scores = scores
        self._hotkey_of = hotkey_of
        self.policy = policy
        self.counters: Counter[str] = Counter()
        self.last_block: int | None = None
        self.last_weights: dict[int, float] = {}

    async def tick(self) -> str | None:
        """Set weights if the interval has passed; the outcome, or None when it was not due."""
        client = self._link.client
        if client is None:
            return None
        try:
            if isinstance(client, DevnetChain):
                await client.reveal_due(self._link.netuid, self.policy.mechid)
            block = await client.block()
            if (
                self.last_block is not None
                and block - self.last_block < self.policy.interval_blocks
            ):
                return None
            outcome = await self._set(client, block)
        except ChainError as exc:
            outcome = exc.fault.value
            log.info("weights not set: %s", exc)
        self.counters[outcome] += 1
        return outcome

    async def _set(self, client: ChainClient, block: int) -> str:
        graph = await client.metagraph(self._link.netuid)
        if graph.uid_of(client.hotkey) is None:
            return "not_registered"
        uids = {n.hotkey: n.uid for n in graph.neurons}
        by_hotkey: dict[str, float] = {}
        for peer, score in self._scores().items():
            hotkey = self._hotkey_of(peer)
            if hotkey is not None:
                by_hotkey[hotkey] = by_hotkey.get(hotkey, 0.0) + score
        weights = uid_weights(
            by_hotkey, uids, burn_uid=self.policy.burn_uid, burn_fraction=self.policy.burn_fraction
        )
        if not weights:
            return "nothing_to_set"
        await client.set_weights(self._link.netuid, weights, mechid=self.policy.mechid)
        self.last_block, self.last_weights = block, weights
        return "ok"

    def status(self) -> dict[str, Any]:
        return {
            "interval_blocks": self.policy.interval_blocks,
            "mechanism": self.policy.mechid,
            "last_block": self.last_block,
            "weights": {str(u): round(w, 6) for u, w in self.last_weights.items()},
            "outcomes": dict(self.counters),
        }
