"""The node's link to its subnet's chain (`[chain]`): the chain client (`DevnetChain` for a
devnet, `BittensorChain` for a bittensor network), the metagraph read again every `refresh_s`,
and this hotkey's uid; on request it registers the hotkey and serves the node's multiaddr.
Under metagraph admission each read replaces the admitted hotkeys, drops the sessions of peers
whose hotkey left the subnet, and dials the multiaddrs served on the chain, so a node needs
only `[chain]` to find its subnet. Chain errors are counted and shown, never fatal: the node
goes on without a fresh metagraph until the chain answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from node.chain.bittensor_chain import BittensorChain
from node.chain.client import ChainClient
from node.chain.config import ChainConfig
from node.chain.devnet_client import DevnetChain
from node.chain.records import ChainError, Metagraph, Neuron
from node.service import Service
from p2p.admission import RegisteredHotkeys
from p2p.binding import HotkeySigner
from p2p.endpoint import Endpoint

log = logging.getLogger(__name__)


def load_wallet(config: ChainConfig) -> Any:
    """`config`'s bittensor wallet (secrets stay in its keyfiles until a call needs them)."""
    from pathlib import Path

    from bittensor_wallet import Wallet

    path = Path(config.wallet_path).expanduser()
    wallet = Wallet(name=config.wallet_name, hotkey=config.wallet_hotkey, path=str(path))
    if not wallet.hotkey_file.exists_on_device():
        raise FileNotFoundError(
            f"chain: no hotkey {config.wallet_hotkey!r} in wallet {config.wallet_name!r} "
            f"under {path}"
        )
    return wallet


class ChainLink(Service):
    def __init__(
        self,
        config: ChainConfig,
        endpoint: Endpoint,
        wallet: Any,
        listen_addrs: Callable[[], list[str]],
        *,
        admission: RegisteredHotkeys | None = None,
        dial: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        """`wallet`: a bittensor wallet, or (devnet) just a hotkey keypair. `admission` and
        `dial`: the node's metagraph admission and how it connects to an address."""
        super().__init__()
        self.config = config
        self._ep = endpoint
        self._wallet = wallet
        self._signer: HotkeySigner = wallet.hotkey if hasattr(wallet, "coldkeypub") else wallet
        self._admission = admission
        self._dial = dial
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
        if self._admission is not None:
            self.admit_from(graph, self._admission)
            await self._discover(graph)
        return graph

    def admit_from(self, graph: Metagraph, admission: RegisteredHotkeys) -> list[str]:
        """Admit the metagraph's hotkeys from now on; drop (and return) the sessions of peers it
        no longer admits."""
        admission.update(
            (n.hotkey for n in graph.neurons),
            (n.hotkey for n in graph.neurons if n.validator_permit),
        )
        sessions = self._ep.sessions
        gone = [p for p, s in sessions.items() if not admission.allows(s.hotkey, list(s.roles))]
        for peer in gone:
            del sessions[peer]
            self.counters["dropped"] += 1
            log.info("chain: %s left the subnet; session dropped", peer)
        return gone

    async def _discover(self, graph: Metagraph) -> None:
        if self._dial is None:
            return
        for n in graph.neurons:
            peer = n.endpoint.rsplit("/p2p/", 1)[-1] if "/p2p/" in n.endpoint else ""
            if not peer or peer == self._ep.peer_id or peer in self._ep.sessions:
                continue
            try:
                await self._dial(n.endpoint)
                self.counters["dialled"] += 1
            except Exception as exc:  # an unreachable peer: tried again at the next read
                self.counters["dial_failed"] += 1
                log.info("chain: cannot dial %s: %s", n.endpoint, exc)

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
            "neurons": [_neuron_row(n) for n in graph.neurons] if graph else [],
        }


def _neuron_row(n: Neuron) -> dict[str, Any]:
    """What the node's dashboard shows of a uid: its stake and what the last epoch gave it."""
    return {
        "uid": n.uid,
        "hotkey": n.hotkey,
        "stake": n.stake,
        "validator_permit": n.validator_permit,
        "incentive": round(n.incentive, 6),
        "dividends": round(n.dividends, 6),
        "emission": round(n.emission, 6),
    }


def _same(served: str | None, addr: str) -> bool:
    """Whether the chain already holds `addr`: whole, or its ip/port part where the chain keeps
    only that (a bittensor axon has no room for the peer id)."""
    return served is not None and served in (addr, addr.split("/p2p/")[0])
