"""The node's link to its subnet's chain (`[chain]`): the chain client (`DevnetChain` for a
devnet, `BittensorChain` for a bittensor network), the metagraph read again every `refresh_s`,
and this hotkey's uid; on request it registers the hotkey and serves the node's multiaddr.
Chain errors are counted and shown, never fatal: the node goes on without a fresh metagraph
until the chain answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from node.chain.bittensor_chain import BittensorChain
from node.chain.client import ChainClient
from node.chain.config import ChainConfig
from node.chain.devnet_client import DevnetChain
from node.chain.records import ChainError, Metagraph
from node.service import Service
from p2p.binding import HotkeySigner
from p2p.endpoint import Endpoint

log = logging.getLogger(__name__)


def load_wallet(config: ChainConfig) -> Any:
    """`config`'s bittensor wallet (secrets stay in its keyfiles until a call needs them)."""
    from pathlib import Path

    from bittensor_wallet import Wallet

    path = Path(config.wallet_path).expanduser()
    return Wallet(name=config.wallet_name, hotkey=config.wallet_hotkey, path=str(path))


class ChainLink(Service):
    def __init__(
        self,
        config: ChainConfig,
        endpoint: Endpoint,
        wallet: Any,
        listen_addrs: Callable[[], list[str]],
    ) -> None:
        """`wallet`: a bittensor wallet, or (devnet) just a hotkey keypair."""
        super().__init__()
        self.config = config
        self._ep = endpoint
        self._wallet = wallet
        self._signer: HotkeySigner = wallet.hotkey if hasattr(wallet, "coldkeypub") else wallet
        self._addrs = listen_addrs
        self._client: ChainClient | None = None
        self.metagraph: Metagraph | None = None
        self.uid: int | None = None
        self.counters: Counter[str] = Counter()
        self.last_error = ""

    @property
    def netuid(self) -> int:
        return self.config.netuid

    @property
    def client(self) -> ChainClient | None:
        if self._client is not None or not self.config.network:
            return self._client
        if self.config.network != "devnet":
            self._client = BittensorChain(self._wallet, network=self.config.network)
            return self._client
        peer = self.config.chain_peer or next(
            (p for p, s in sorted(self._ep.sessions.items()) if "chain" in s.roles), ""
        )
        if peer:
            self._client = DevnetChain(self._ep, peer, self._signer)
        return self._client

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except ChainError as exc:
                self.counters[exc.fault.value] += 1
                self.last_error = str(exc)
                log.info("chain: %s", exc)
            await asyncio.sleep(self.config.refresh_s)

    async def refresh(self) -> Metagraph | None:
        client = self.client
        if client is None:
            return None
        graph = await client.metagraph(self.netuid)
        uid = graph.uid_of(client.hotkey)
        if uid is None and self.config.register:
            uid = await client.register(self.netuid)
            self.counters["registered"] += 1
            graph = await client.metagraph(self.netuid)
        addrs = self._addrs()
        if (
            self.config.serve
            and uid is not None
            and addrs
            and graph.neurons[uid].endpoint != addrs[0]
        ):
            await client.serve(self.netuid, addrs[0])
            self.counters["served"] += 1
        self.metagraph, self.uid = graph, uid
        self.counters["refreshed"] += 1
        return graph

    def status(self) -> dict[str, Any]:
        graph = self.metagraph
        return {
            "network": self.config.network,
            "netuid": self.netuid,
            "hotkey": self._signer.ss58_address,
            "uid": self.uid,
            "block": graph.block if graph else None,
            "uids": len(graph.neurons) if graph else 0,
            "counters": dict(self.counters),
            "last_error": self.last_error,
        }


def _same(served: str | None, addr: str) -> bool:
    """Whether the chain already holds `addr`: whole, or its ip/port part where the chain keeps
    only that (a bittensor axon has no room for the peer id)."""
    return served is not None and served in (addr, addr.split("/p2p/")[0])
