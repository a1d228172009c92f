"""Trio-side half of the p2p host: builds and runs the Noise+Yamux libp2p host in the trio thread.

Everything here runs on the trio thread: ``setup`` as the TrioThread setup, the coroutines via
``TrioThread.run_in_trio``, the stream handler and notifee when libp2p calls them. The asyncio
side only reads ``peers``, an immutable tuple republished on connection events and every
``REFRESH_S`` (identify fills in addresses shortly after a connection is up), so no lock is needed.

Security is Noise only (no TLS/secio/plaintext fallback, so a plaintext dialer is refused); the
muxer is Yamux only (Mplex is slow and resets idle streams). ``libp2p.new_host`` already
registers libp2p's own identify (``/ipfs/id/1.0.0``, plus identify push) and ping
(``/ipfs/ping/1.0.0``) handlers, and runs identify on every new connection.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING_PROTOCOL_ID
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as Libp2pPeerInfo
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from multiaddr import Multiaddr

from p2p import peer_exchange as peerx
from p2p.bridge import Portal
from p2p.errors import DialError, HostError
from p2p.host import PeerInfo

REFRESH_S = 0.5
STREAM_TIMEOUT_S = 5.0
PEERX_PROTOCOL = TProtocol(peerx.PROTOCOL_ID)

log = logging.getLogger(__name__)


class _Wake(INotifee):
    """Republishes the peer snapshot as soon as a connection opens or closes."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._wake()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._wake()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass


class TrioHost:
    """The libp2p host and what the asyncio side asks of it."""

    def __init__(self, seed: bytes, listen: list[str]) -> None:
        self._seed = seed
        self._listen = listen
        self._host: IHost | None = None
        self._changed: trio.Event | None = None
        self._first_seen: dict[str, tuple[float, Literal["inbound", "outbound"]]] = {}
        self.portal: Portal | None = None
        self.peer_id = ""
        self.listen_addrs: tuple[str, ...] = ()
        self.peers: tuple[PeerInfo, ...] = ()

    @property
    def host(self) -> IHost:
        if self._host is None:
            raise HostError("libp2p host is not running")
        return self._host

    async def setup(self, nursery: trio.Nursery, portal: Portal) -> None:
        key_pair = create_new_key_pair(self._seed)
        noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        addrs = [Multiaddr(a) for a in self._listen]
        _ensure_ports_free(addrs)
        host = new_host(
            key_pair=key_pair,
            sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=addrs,
        )
        host.set_stream_handler(PEERX_PROTOCOL, self._serve_peer_exchange)
        host.get_network().register_notifee(_Wake(self._wake))
        self._changed = trio.Event()
        await nursery.start(self._run, host, addrs)
        self._host, self.portal = host, portal
        self.peer_id = str(host.get_id())
        self.listen_addrs = tuple(str(a) for a in host.get_addrs())
        nursery.start_soon(self._refresh_loop)

    async def _run(
        self, host: IHost, addrs: list[Multiaddr], *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with host.run(addrs):
            # Swarm.listen only logs (at debug level) when a listener fails, and host.run
            # ignores its result: check each address ourselves.
            missing = [str(a) for a in addrs if str(a) not in host.get_network().listeners]
            if missing:
                raise HostError(f"cannot listen on {', '.join(missing)} (in use or unsupported)")
            # libp2p's AutoConnector re-dials every peerstore peer while below 100 connections;
            # dialing policy (bootstrap backoff, max_peers) belongs to P2PHost.maintain instead.
            auto_connector = getattr(host.get_network(), "auto_connector", None)
            if auto_connector is not None:
                await auto_connector.stop()
            task_status.started()
            await trio.sleep_forever()

    async def connect_addr(self, addr: str, limit_s: float) -> str:
        return await self._dial(info_from_p2p_addr(Multiaddr(addr)), limit_s)

    async def connect_peer(self, peer_id: str, addrs: list[str], limit_s: float) -> str:
        info = Libp2pPeerInfo(ID.from_base58(peer_id), [Multiaddr(a) for a in addrs])
        return await self._dial(info, limit_s)

    async def _dial(self, info: Libp2pPeerInfo, limit_s: float) -> str:
        host = self.host
        if info.peer_id == host.get_id():
            raise DialError("refusing to dial our own peer id")
        # libp2p blocks a peer for 60 s after a failed dial; our callers do their own backoff.
        unblock = getattr(host.get_network(), "unblock_peer", None)
        if callable(unblock):
            unblock(info.peer_id)
        with trio.fail_after(limit_s):
            await host.connect(info)
        self._refresh()
        return str(info.peer_id)

    async def request_peers(self, peer_id: str) -> bytes:
        """Run one peer exchange request; returns the raw (undecoded) response body."""
        with trio.fail_after(STREAM_TIMEOUT_S):
            stream = await self.host.new_stream(ID.from_base58(peer_id), [PEERX_PROTOCOL])
            try:
                await peerx.write_frame(stream, peerx.encode_request())
                data = await peerx.read_frame(stream)
            except BaseException:
                await _reset(stream)
                raise
            await stream.close()
        return data

    async def ping(self, peer_id: str) -> float:
        """Round-trip time in seconds of one libp2p ping."""
        with trio.fail_after(STREAM_TIMEOUT_S):
            stream = await self.host.new_stream(ID.from_base58(peer_id), [PING_PROTOCOL_ID])
            try:
                started = time.perf_counter()
                await perform_ping_roundtrip(stream)
                rtt = time.perf_counter() - started
            except BaseException:
                await _reset(stream)
                raise
            await stream.close()
        return rtt

    async def _serve_peer_exchange(self, stream: INetStream) -> None:
        requester = str(stream.muxed_conn.peer_id)
        try:
            with trio.fail_after(STREAM_TIMEOUT_S):
                await peerx.read_frame(stream)  # the request carries no options yet
                self._refresh()
                known = [peerx.PeerRecord(p.peer_id, p.addrs) for p in self.peers]
                records = [r for r in known if r.peer_id != requester]
                await peerx.write_frame(stream, peerx.encode_response(records))
            await stream.close()
        except Exception as exc:
            log.debug("peer exchange request from %s failed: %r", requester, exc)
            await _reset(stream)

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _refresh_loop(self) -> None:
        while True:
            self._refresh()
            self._changed = trio.Event()
            with trio.move_on_after(REFRESH_S):
                await self._changed.wait()

    def _refresh(self) -> None:
        """Republish `peers` from libp2p's connection table and peerstore."""
        host, now = self.host, time.time()
        first_seen: dict[str, tuple[float, Literal["inbound", "outbound"]]] = {}
        peers = []
        for pid, conns in list(host.get_network().connections.items()):
            live = [c for c in conns if not c.is_closed]
            if not live:
                continue
            key = str(pid)
            since, direction = self._first_seen.get(key) or (now, _direction(live[0]))
            first_seen[key] = (since, direction)
            try:
                known = [str(a) for a in host.get_peerstore().addrs(pid)]
            except Exception:  # PeerStoreError: nothing known (yet)
                known = []
            addrs = tuple(peerx.dialable_addrs(known, _remote_ip(live[0])))
            peers.append(
                PeerInfo(peer_id=key, addrs=addrs, connected_since=since, direction=direction)
            )
        self._first_seen = first_seen
        self.peers = tuple(sorted(peers, key=lambda p: p.connected_since))


def _ensure_ports_free(addrs: list[Multiaddr]) -> None:
    """libp2p listens with SO_REUSEPORT, so a port already in use would be silently shared."""
    for addr in addrs:
        parts = str(addr).split("/")
        if len(parts) < 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp" or parts[4] == "0":
            continue
        family = socket.AF_INET if parts[1] == "ip4" else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((parts[2], int(parts[4])))
            except OSError as exc:
                raise HostError(f"cannot listen on {addr}: {exc.strerror}") from None


def _direction(conn: INetConn) -> Literal["inbound", "outbound"]:
    name = getattr(getattr(conn, "direction", None), "name", None)  # rcmgr.Direction (IntEnum)
    return "inbound" if name == "INBOUND" else "outbound"


def _remote_ip(conn: INetConn) -> str | None:
    get_remote = getattr(conn.muxed_conn, "get_remote_address", None)
    remote = get_remote() if callable(get_remote) else None
    return str(remote[0]) if remote else None


async def _reset(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.reset()
        except Exception:
            log.debug("stream reset failed", exc_info=True)
