"""asyncio face of the node's libp2p host: config, lifecycle, peers, dialing and maintenance.

``P2PHost`` owns a ``TrioThread`` running ``p2p.trio_host.TrioHost``; every libp2p call goes
through the portal and every libp2p/trio exception becomes a ``HostError`` (``DialError``,
``PeerExchangeError``) here. ``maintain()`` is the node's daemon task: it keeps the bootstrap
peers connected and runs peer exchange every interval, dialing learned peers up to
``max_peers``; failed dials of either kind back off per peer (exponential, with jitter).
libp2p itself is imported only by ``start()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar, TypeVarTuple

import trio

from p2p.backoff import Backoff
from p2p.bridge import Portal, TrioThread
from p2p.errors import DialError, HostError, P2PError, PeerExchangeError
from p2p.identity import NodeKey
from p2p.peer_exchange import PeerRecord, decode_response

if TYPE_CHECKING:
    from libp2p.abc import IHost

    from p2p.trio_host import TrioHost

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
PEERX_FANOUT = 4
COUNTERS = ("dials_ok", "dials_failed", "peerx_ok", "peerx_failed", "peerx_malformed")

log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class HostConfig:
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    dial_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    peer_exchange_interval_s: float = 2.0
    max_peers: int = 64
    bulk_listen: str = "127.0.0.1:0"  # "host:port" of the plain-TCP bulk lane; "" disables it
    bulk_threshold_bytes: int = 0  # bodies this large go over the bulk lane (0: every frame)
    peer_inflight_bytes: int = 512 * 1024 * 1024  # body bytes held per remote before refusing
    flaky_net: float = 0.0
    """Test and chaos runs only: lose or delay this share of outgoing requests (0 = never)."""

    def __post_init__(self) -> None:
        if not self.listen:
            raise ValueError("p2p.listen needs at least one address")
        for addr in [*self.listen, *self.bootstrap]:
            if not addr.startswith("/"):
                raise ValueError(f"not a multiaddr: {addr!r}")
        for addr in self.bootstrap:
            if "/p2p/" not in addr:
                raise ValueError(f"bootstrap address {addr!r} lacks /p2p/<peer id>")
        if min(self.dial_timeout_s, self.backoff_initial_s, self.peer_exchange_interval_s) <= 0:
            raise ValueError("p2p timeouts and intervals must be > 0")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("p2p.backoff_max_s must be >= p2p.backoff_initial_s")
        if self.max_peers < 1:
            raise ValueError("p2p.max_peers must be >= 1")
        if self.bulk_listen and not _is_host_port(self.bulk_listen):
            raise ValueError(f"p2p.bulk_listen must be host:port, got {self.bulk_listen!r}")
        if not 0 <= self.flaky_net < 1:
            raise ValueError(f"p2p.flaky_net must be in [0, 1), got {self.flaky_net}")
        if self.bulk_threshold_bytes < 0 or self.peer_inflight_bytes < 1:
            raise ValueError("p2p.bulk_threshold_bytes must be >= 0, peer_inflight_bytes >= 1")


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A connected peer: its announced (dialable) addresses and the first live connection."""

    peer_id: str
    addrs: tuple[str, ...]
    connected_since: float
    direction: Literal["inbound", "outbound"]


class P2PHost:
    """The node's libp2p host (Noise + Yamux over TCP), driven from asyncio."""

    def __init__(self, key: NodeKey, config: HostConfig) -> None:
        self._key = key
        self._config = config
        self._thread: TrioThread | None = None
        self._node: TrioHost | None = None
        self._dialing: set[str] = set()
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self._kick = asyncio.Event()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    @property
    def peer_id(self) -> str:
        return self._key.peer_id

    @property
    def config(self) -> HostConfig:
        return self._config

    @property
    def listen_addrs(self) -> list[str]:
        """Full multiaddrs we listen on, each ending in /p2p/<peer id>."""
        return list(self._node.listen_addrs) if self._node else []

    @property
    def running(self) -> bool:
        return self._node is not None and self._thread is not None and self._thread.running

    def connected_peers(self) -> list[PeerInfo]:
        return list(self._node.peers) if self.running and self._node else []

    async def start(self) -> None:
        if self._thread is not None:
            raise HostError("host already started")
        try:
            from p2p.trio_host import TrioHost
        except ImportError as exc:
            raise HostError(f"libp2p is unavailable: {exc}") from exc
        node = TrioHost(self._key.seed, list(self._config.listen))
        thread = self._thread = TrioThread(name=f"libp2p-{self.peer_id[-8:]}")
        try:
            await thread.start(node.setup)
            if node.peer_id != self.peer_id:
                raise HostError(f"libp2p derived peer id {node.peer_id}, expected {self.peer_id}")
        except BaseException as exc:
            with contextlib.suppress(HostError):
                await thread.stop(5.0)
            self._thread = None
            if isinstance(exc, HostError) or not isinstance(exc, Exception):
                raise
            raise HostError(f"libp2p host failed to start: {describe(exc)}") from exc
        self._node = node
        log.info("libp2p host %s listening on %s", self.peer_id, " ".join(node.listen_addrs))

    async def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread, self._node = self._thread, None, None
        if thread is not None:
            await thread.stop(timeout)

    async def connect(self, addr: str) -> str:
        """Dial `addr` (must end in /p2p/<id>) unless already connected; returns the peer id."""
        node = self._running_node()
        timeout = self._config.dial_timeout_s
        try:
            peer_id = await self._call(node.connect_addr, addr, timeout, what=f"dial {addr}")
        except HostError as exc:
            self.counters["dials_failed"] += 1
            if isinstance(exc, DialError):
                raise
            raise DialError(str(exc)) from exc
        self.counters["dials_ok"] += 1
        return peer_id

    async def ping(self, peer_id: str) -> float:
        """Round-trip time in seconds of a libp2p ping (/ipfs/ping/1.0.0) to a connected peer."""
        return await self._call(self._running_node().ping, peer_id, what=f"ping {peer_id}")

    async def run_with_host(
        self, fn: Callable[[IHost, Portal, *Ts], Awaitable[T]], *args: *Ts
    ) -> T:
        """Run trio code `fn(libp2p_host, portal, *args)` in the libp2p thread (for protocols).

        A P2PError it raises passes through; any other exception becomes a HostError.
        """
        node = self._running_node()
        if node.portal is None:
            raise HostError("host is not running")
        return await self._call(fn, node.host, node.portal, *args, what="libp2p call")

    def call_soon_with_host(self, fn: Callable[[IHost, *Ts], object], *args: *Ts) -> None:
        """Schedule the plain function `fn(libp2p_host, *args)` in the libp2p thread; no wait."""
        node, thread = self._running_node(), self._thread
        if thread is None:
            raise HostError("host is not running")
        thread.run_sync_soon(fn, node.host, *args)

    async def maintain(self) -> None:
        """Keep bootstrap peers connected and exchange peers forever; cancel to stop.

        Raises HostError if the libp2p thread dies underneath it (it never returns otherwise).
        """
        self._running_node()
        bootstrap = [a for a in self._config.bootstrap if not a.endswith(f"/p2p/{self.peer_id}")]
        tasks = [
            asyncio.create_task(self._keep_connected(a), name=f"p2p-bootstrap {a}")
            for a in bootstrap
        ]
        tasks.append(asyncio.create_task(self._exchange_loop(), name="p2p-peer-exchange"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def exchange_once(self) -> int:
        """One peer exchange round; returns how many newly learned peers were connected."""
        peers = self.connected_peers()
        asked = random.sample(peers, min(len(peers), PEERX_FANOUT))
        answers = await asyncio.gather(*(self._ask(p.peer_id) for p in asked))
        known = {p.peer_id for p in self.connected_peers()} | self._dialing | {self.peer_id}
        learned: dict[str, tuple[str, ...]] = {}
        for record in (r for records in answers for r in records):
            if record.addrs and record.peer_id not in known and self._backoff.ready(record.peer_id):
                learned.setdefault(record.peer_id, record.addrs)
        room = self._config.max_peers - len(self.connected_peers()) - len(self._dialing)
        targets = list(learned.items())[: max(0, room)]
        dialed = await asyncio.gather(*(self._dial_learned(p, a) for p, a in targets))
        return sum(dialed)

    async def _keep_connected(self, addr: str) -> None:
        cfg = self._config
        peer_id = addr.rsplit("/p2p/", 1)[1]
        while True:
            if peer_id not in {p.peer_id for p in self.connected_peers()}:
                try:
                    await self.connect(addr)
                except HostError as exc:
                    pause = self._backoff.failed(peer_id)
                    log.info("bootstrap %s: %s; retrying in %.1fs", addr, exc, pause)
                    await asyncio.sleep(pause)
                    continue
                self._backoff.succeeded(peer_id)
                self._kick.set()
            await asyncio.sleep(cfg.peer_exchange_interval_s)

    async def _exchange_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._config.peer_exchange_interval_s)
            self._kick.clear()
            if self.running:
                await self.exchange_once()
            elif self._thread is not None:  # not stopped through stop(): the thread died
                raise HostError("the libp2p thread stopped unexpectedly")

    async def _ask(self, peer_id: str) -> list[PeerRecord]:
        try:
            node = self._running_node()
            data = await self._call(node.request_peers, peer_id, what=f"peer exchange {peer_id}")
            records = decode_response(data)
        except PeerExchangeError as exc:
            self.counters["peerx_malformed"] += 1
            log.warning("ignoring peer exchange response from %s: %s", peer_id, exc)
            return []
        except HostError as exc:
            self.counters["peerx_failed"] += 1
            log.debug("peer exchange with %s failed: %s", peer_id, exc)
            return []
        self.counters["peerx_ok"] += 1
        return records

    async def _dial_learned(self, peer_id: str, addrs: tuple[str, ...]) -> bool:
        self._dialing.add(peer_id)
        try:
            node = self._running_node()
            timeout = self._config.dial_timeout_s
            await self._call(node.connect_peer, peer_id, list(addrs), timeout, what="dial")
        except HostError as exc:
            self.counters["dials_failed"] += 1
            pause = self._backoff.failed(peer_id)
            log.debug("learned peer %s at %s: %s; next try in %.1fs", peer_id, addrs, exc, pause)
            return False
        finally:
            self._dialing.discard(peer_id)
        self._backoff.succeeded(peer_id)
        self.counters["dials_ok"] += 1
        return True

    def _running_node(self) -> TrioHost:
        if not self.running or self._node is None:
            raise HostError("host is not running")
        return self._node

    async def _call(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts, what: str) -> T:
        thread = self._thread
        if thread is None:
            raise HostError("host is not running")
        try:
            return await thread.run_in_trio(fn, *args)
        except P2PError:
            raise
        except Exception as exc:
            raise HostError(f"{what}: {describe(exc)}") from exc


def _is_host_port(addr: str) -> bool:
    host, sep, port = addr.rpartition(":")
    return bool(sep and host and port.isdigit() and int(port) < 65536)


def describe(exc: BaseException) -> str:
    """A one-line reason from an exception and its causes (libp2p wraps errors deeply)."""
    if isinstance(exc, BaseExceptionGroup):  # trio nurseries wrap everything
        return "; ".join(describe(e) for e in exc.exceptions)
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 4:
        text = "timed out" if isinstance(current, trio.TooSlowError) else str(current)
        parts.append(" ".join((text or type(current).__name__).split()))
        current = current.__cause__
    return ": ".join(parts)
