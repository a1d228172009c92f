"""Prometheus metrics of one node, on a registry of its own (several nodes can share a process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node import __version__


class NodeMetrics:
    def __init__(self, *, roles: list[str], peer_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.started_at = time.time()
        info = Info(
            "tessera_build", "Version, roles and identity of this node", registry=self.registry
        )
        info.info({"version": __version__, "roles": ",".join(roles), "peer_id": peer_id})
        uptime = Gauge(
            "tessera_uptime_seconds", "Seconds since the node started", registry=self.registry
        )
        uptime.set_function(lambda: time.time() - self.started_at)
        self.peers_connected = Gauge(
            "tessera_peers_connected", "Peers with a live libp2p connection", registry=self.registry
        )
        self.http_requests = Counter(
            "tessera_http_requests",
            "Status HTTP requests by route and status code",
            ["route", "code"],
            registry=self.registry,
        )
        self.store_used_bytes = Gauge(
            "tessera_store_used_bytes", "Bytes used in the LMDB map", registry=self.registry
        )
        self.store_map_bytes = Gauge(
            "tessera_store_map_bytes", "Size of the LMDB map", registry=self.registry
        )
        self.store_errors = Counter(
            "tessera_store_errors", "Store errors by reason", ["reason"], registry=self.registry
        )

    def watch_counters(
        self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, int]]
    ) -> None:
        """Expose a component's plain counter dict as one labelled Prometheus counter."""
        self.registry.register(_DictCounters(name, doc, label, read))

    def watch_gauges(
        self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """Expose a component's current values (e.g. per-domain loss) as one labelled gauge."""
        self.registry.register(_DictGauges(name, doc, label, read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DictCounters(Collector):
    def __init__(
        self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, int]]
    ) -> None:
        self._name, self._doc, self._label, self._read = name, doc, label, read

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        for key, value in sorted(self._read().items()):
            family.add_metric([key], value)
        yield family


class _DictGauges(Collector):
    def __init__(
        self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        self._name, self._doc, self._label, self._read = name, doc, label, read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self._name, self._doc, labels=[self._label])
        for key, value in sorted(self._read().items()):
            family.add_metric([key], value)
        yield family
