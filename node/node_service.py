"""The node itself: opens its home's store, libp2p host and status server, then runs its roles.

Resources close in the reverse order of opening (libp2p, then aiohttp, then LMDB), each bounded
by the node's shutdown timeout; role components and other workers are cancelled before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from node import __version__
from node.blob_server import serve_blobs
from node.chain.link import ChainLink, load_wallet
from node.config import NodeConfig
from node.dashboard.feed import DashboardFeed
from node.dashboard.view import dashboard_view
from node.greeter import Greeter
from node.memory_trim import trim_forever
from node.metrics import NodeMetrics
from node.peer_book import PeerBook
from node.roles import (
    MinerComponent,
    OrchestratorComponent,
    RoleComponent,
    RoleContext,
    ValidatorComponent,
)
from node.sdnotify import SystemdNotifier
from node.service import Service, close_bounded, run_service, sleep_forever
from node.status_http import StatusServer, build_app
from p2p.admission import RegisteredHotkeys
from p2p.binding import HotkeyBinding
from p2p.endpoint import Endpoint
from p2p.flaky_transport import FlakyTransport
from p2p.host import P2PHost
from p2p.identity import NodeKey
from p2p.libp2p_transport import Libp2pTransport
from p2p.messages import Hello
from p2p.transport import Transport
from store import BlobStore, Store

log = logging.getLogger(__name__)

ENDPOINTS_FILE = "endpoints.json"


class Workers(Service):
    """Everything that runs while the node's resources are open."""

    name = "workers"

    def __init__(self, children: Sequence[Service], daemons: dict[str, Any]) -> None:
        super().__init__()
        self._children = children
        self._daemons = daemons

    async def run(self) -> None:
        for child in self._children:
            self.manager.run_child_service(child)
        for job, fn in self._daemons.items():
            self.manager.run_daemon_task(job, fn)
        await sleep_forever()


class NodeService(Service):
    name = "node"

    def __init__(
        self,
        config: NodeConfig,
        key: NodeKey,
        *,
        binding: HotkeyBinding | None = None,
        notifier: SystemdNotifier | None = None,
        extra_services: Sequence[Service] = (),
    ) -> None:
        super().__init__()
        self._config = config
        self._key = key
        self._binding = binding
        self._notifier = notifier or SystemdNotifier()
        self._extra = extra_services
        self._link: ChainLink | None = None
        self._roles: list[RoleComponent[Any]] = []
        self._host: P2PHost | None = None
        self._store: Store | None = None
        self._peer_book: PeerBook | None = None
        self._greeter: Greeter | None = None
        self.endpoint: Endpoint | None = None
        self.dashboard: DashboardFeed | None = None
        self._http_url = ""
        self.metrics = NodeMetrics(roles=config.node.roles, peer_id=key.peer_id)
        self.ready = asyncio.Event()

    @property
    def home(self) -> Path:
        return self._config.node.home

    @property
    def store(self) -> Store | None:
        return self._store

    @property
    def http_url(self) -> str:
        return self._http_url

    @property
    def p2p_addrs(self) -> list[str]:
        return self._host.listen_addrs if self._host else []

    async def run(self) -> None:
        cfg = self._config
        timeout = cfg.node.shutdown_timeout_s
        async with contextlib.AsyncExitStack() as stack:
            store = self._store = Store.open(self.home / "store", cfg.store)
            self.metrics.watch_store(store, BlobStore(store))
            stack.push_async_callback(close_bounded, "lmdb", _async(store.close), timeout)

            feed = self.dashboard = self._dashboard_feed()
            app = build_app(
                status=self.status, peers=self.peers, metrics=self.metrics, dashboard=feed
            )
            server = StatusServer(cfg.http, app)
            await server.start()
            self._http_url = server.url
            stack.push_async_callback(close_bounded, "aiohttp", server.close, timeout)

            host = P2PHost(self._key, cfg.p2p)
            stack.push_async_callback(close_bounded, "libp2p", host.stop, timeout)
            await host.start()
            self._host = host
            transport = Libp2pTransport(host, cfg.p2p)
            stack.push_async_callback(close_bounded, "transport", transport.close, timeout)
            wire: Transport = transport
            if cfg.p2p.flaky_net:
                wire = FlakyTransport(transport, cfg.p2p.flaky_net)
                log.warning("flaky-net fault: losing or delaying %.0f%% of requests",
                            100 * cfg.p2p.flaky_net)  # fmt: skip
            endpoint = self.endpoint = Endpoint(
                self._key,
                cfg.node.run_id,
                wire,
                admission=cfg.admission.build(),
                hello=lambda: self._hello(transport.bulk_address),
                limits=cfg.limits,
                any_run=set(cfg.node.roles) == {"chain"},  # the subnet's chain serves every run
            )
            greeter = self._greeter = Greeter(endpoint, host)
            serve_blobs(endpoint, BlobStore(store))
            peers = self._peer_book = PeerBook(host, store, self.metrics)
            hotkey = self._binding.hotkey if self._binding else None
            link = self._chain_link(endpoint)
            ctx = RoleContext(
                run_id=cfg.node.run_id,
                home=self.home,
                store=store,
                host=host,
                endpoint=endpoint,
                peers=peers,
                binding_hotkey=hotkey,
                metrics=self.metrics,
                chain=link,
            )
            self._roles = [self._make_role(name, ctx) for name in cfg.node.roles]
            await transport.start()
            self._watch(host, transport, endpoint, greeter)
            workers = Workers(
                [
                    peers,
                    greeter,
                    *([link] if link else []),
                    *([feed] if feed else []),
                    *self._roles,
                    *self._extra,
                ],
                {
                    "p2p-maintain": host.maintain,
                    "watchdog": self._notifier.watchdog,
                    "heap-trim": trim_forever,
                },
            )
            stack.callback(self._remove_endpoints)
            self._write_endpoints()
            log.info(
                "node %s up: roles=%s http=%s p2p=%s",
                self._key.peer_id,
                ",".join(cfg.node.roles),
                self._http_url,
                " ".join(host.listen_addrs),
            )
            self._notifier.notify("READY=1", f"STATUS=serving {self._http_url}")
            self.ready.set()
            await run_service(workers)

    def _hello(self, bulk_addr: str) -> Hello:
        roles = self._config.node.roles
        return Hello(
            roles=list(roles),
            capacity=self._config.miner.capacity if "miner" in roles else 0.0,
            binding=self._binding.to_json() if self._binding else None,
            bulk_addr=bulk_addr,
            agent=f"tessera/{__version__}",
        )

    def _watch(
        self, host: P2PHost, transport: Libp2pTransport, endpoint: Endpoint, greeter: Greeter
    ) -> None:
        watch = self.metrics.watch_counters
        watch(
            "tessera_p2p_events",
            "libp2p dials and peer exchanges by outcome",
            "event",
            lambda: host.counters,
        )
        watch(
            "tessera_transport_events",
            "Frames, bytes and stream events of the transport",
            "event",
            lambda: transport.counters,
        )
        watch(
            "tessera_refusals",
            "Messages refused by this node, by reason code",
            "reason",
            lambda: endpoint.refusals.counts,
        )
        watch(
            "tessera_greetings",
            "Hellos and heartbeats sent, by outcome",
            "event",
            lambda: greeter.counters,
        )

    def _chain_link(self, endpoint: Endpoint) -> ChainLink | None:
        cfg = self._config.chain
        if not cfg.network:
            return None
        policy = endpoint.admission
        self._link = ChainLink(
            cfg, endpoint, load_wallet(cfg), lambda: self.p2p_addrs,
            admission=policy if isinstance(policy, RegisteredHotkeys) else None,
            dial=self._host.connect if self._host else None,
        )  # fmt: skip
        return self._link

    def _dashboard_feed(self) -> DashboardFeed | None:
        config = self._config.http.dashboard
        if not config.enabled:
            return None
        feed = DashboardFeed(config, lambda: dashboard_view(self.status(), self.peers()))
        self.metrics.watch_counters(
            "tessera_dashboard_events",
            "Dashboard feed: snapshots built and failed, snapshots dropped for slow clients, "
            "streams refused, CPU milliseconds spent building snapshots",
            "event",
            lambda: feed.counters,
        )
        return feed

    def _make_role(self, name: str, ctx: RoleContext) -> RoleComponent[Any]:
        cfg = self._config
        if name == "orchestrator":
            return OrchestratorComponent(cfg.orchestrator, ctx)
        if name == "miner":
            return MinerComponent(cfg.miner, ctx)
        if name == "validator":
            return ValidatorComponent(cfg.validator, ctx)
        if name == "chain":
            from node.chain.role import ChainComponent

            return ChainComponent(cfg.devnet_chain, ctx)
        raise ValueError(f"unknown role {name!r}")

    def _write_endpoints(self) -> None:
        data = {
            "pid": os.getpid(),
            "peer_id": self._key.peer_id,
            "http": self._http_url,
            "p2p": self._host.listen_addrs if self._host else [],
        }
        tmp = self.home / (ENDPOINTS_FILE + ".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        os.replace(tmp, self.home / ENDPOINTS_FILE)

    def _remove_endpoints(self) -> None:
        (self.home / ENDPOINTS_FILE).unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        host = self._host
        live = host.connected_peers() if host else []
        doc: dict[str, Any] = {
            "version": __version__,
            "roles": self._config.node.roles,
            "peer_id": self._key.peer_id,
            "hotkey": self._binding.hotkey if self._binding else None,
            "listen_addrs": host.listen_addrs if host else [],
            "http": self._http_url,
            "uptime_s": round(time.time() - self.metrics.started_at, 3),
            "run_id": self._config.node.run_id,
            "connected_peers": [p.peer_id for p in live],
            "admitted_peers": self._admitted(),
            "refusals": dict(self.endpoint.refusals.counts) if self.endpoint else {},
            "store": self._store_stats(),
        }
        if self._link is not None:
            doc["chain"] = self._link.status()
        for role in self._roles:
            doc[role.name] = role.status()
        return doc

    def _admitted(self) -> list[dict[str, Any]]:
        if self.endpoint is None:
            return []
        return [
            {
                "peer_id": s.peer_id,
                "hotkey": s.hotkey,
                "roles": list(s.roles),
                "capacity": s.capacity,
            }
            for s in self.endpoint.sessions.values()
        ]

    def peers(self) -> dict[str, Any]:
        host = self._host
        live = host.connected_peers() if host else []
        connected = [
            {
                "peer_id": p.peer_id,
                "addrs": list(p.addrs),
                "direction": p.direction,
                "connected_since": p.connected_since,
            }
            for p in live
        ]
        known = self._peer_book.known() if self._peer_book else []
        return {"connected": connected, "known": known}

    def _store_stats(self) -> dict[str, Any]:
        if self._store is None:
            return {}
        blobs = BlobStore(self._store)
        return {
            **self._store.stats(),
            "blob_bytes": blobs.total_bytes(),
            "blobs": blobs.count(),
            "blob_budget": self._store.config.blob_budget_bytes,
        }


def _async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        fn()

    return call
