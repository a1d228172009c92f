"""Prometheus metrics of one node, on a registry of its own (several nodes can share a process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node import __version__
from store import BlobStore, Store


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
        self._store_gauges = {
            name: Gauge(name, doc, registry=self.registry)
            for name, doc in (
                ("tessera_store_used_bytes", "Bytes used in the LMDB map (its high-water)"),
                ("tessera_store_data_bytes", "Bytes of the LMDB pages holding data now"),
                ("tessera_store_map_bytes", "Size of the LMDB map"),
                ("tessera_store_blob_bytes", "Bytes of blobs (checkpoints, tensors) in the store"),
                ("tessera_store_blob_budget_bytes", "Bytes blobs may take before eviction"),
            )
        }
        self.store_errors = Counter(
            "tessera_store_errors", "Store errors by reason", ["reason"], registry=self.registry
        )

    def watch_store(self, store: Store, blobs: BlobStore) -> None:
        """Read the store's use at each scrape (a closed store reads as 0)."""
        readers: dict[str, Callable[[], float]] = {
            "tessera_store_used_bytes": lambda: store.stats()["used"],
            "tessera_store_data_bytes": lambda: store.stats()["data"],
            "tessera_store_map_bytes": lambda: store.config.map_size_bytes,
            "tessera_store_blob_bytes": blobs.total_bytes,
            "tessera_store_blob_budget_bytes": lambda: store.config.blob_budget_bytes,
        }
        for name, read in readers.items():
            self._store_gauges[name].set_function(
                lambda read=read: 0.0 if store.closed else float(read())  # type: ignore[misc]
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
