"""Prometheus metrics for the gateway, in a registry of the app's own (tests build many apps)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from openclone.model_names import parse_model_name
from openclone.routing.router import Router

if TYPE_CHECKING:
    from openclone.store.writer import CaptureWriter

# The one label of every model name the router does not serve: names come from clients, and
# each distinct label is a time series kept forever and written out at every scrape.
UNKNOWN_MODEL = "unknown"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _ReplicaCollector(Collector):
    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily(
            "openclone_replica_up", "1 when the replica takes requests", labels=["model", "replica"]
        )
        busy = GaugeMetricFamily(
            "openclone_replica_in_flight", "requests in flight", labels=["model", "replica"]
        )
        fails = GaugeMetricFamily(
            "openclone_replica_failures", "times marked down", labels=["model", "replica"]
        )
        restarts = CounterMetricFamily(
            "openclone_engine_worker_restarts",
            "times the replica's engine worker process was started again",
            labels=["model", "replica"],
        )
        exits = GaugeMetricFamily(
            "openclone_engine_worker_last_exit_timestamp_seconds",
            "when the replica's engine worker last died, by reason",
            labels=["model", "replica", "reason"],
        )
        for route in self.router.routes.values():
            for r in route.replicas:
                up.add_metric([route.name, r.id], 1.0 if r.healthy else 0.0)
                busy.add_metric([route.name, r.id], float(r.in_flight))
                fails.add_metric([route.name, r.id], float(r.failures))
                worker = r.worker_status()
                if worker is not None:
                    restarts.add_metric([route.name, r.id], float(worker["restarts"]))
                    if worker["last_exit"]:
                        last = worker["last_exit"]
                        exits.add_metric([route.name, r.id, last["reason"]], last["at"])
        yield up
        yield busy
        yield fails
        yield restarts
        yield exits


class _CaptureCollector(Collector):
    def __init__(self, writer: CaptureWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        w = self.writer
        yield CounterMetricFamily("openclone_captures_written", "captures committed", w.written)
        yield CounterMetricFamily(
            "openclone_captures_dropped", "captures dropped: the queue was full", w.dropped
        )
        yield CounterMetricFamily("openclone_captures_failed", "captures that failed", w.failed)
        yield GaugeMetricFamily("openclone_capture_queue", "captures waiting", w.queued)


class Metrics:
    def __init__(self, router: Router, writer: CaptureWriter | None = None) -> None:
        self.router = router
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "openclone_requests",
            "API requests by outcome",
            ["endpoint", "model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "openclone_request_seconds",
            "time to the last byte",
            ["endpoint", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "openclone_time_to_first_token_seconds",
            "streaming: time to the first content",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "openclone_tokens",
            "tokens processed",
            ["model", "kind"],
            registry=self.registry,
        )
        self.disconnects = Counter(
            "openclone_client_disconnects",
            "clients that left before the end",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_ReplicaCollector(router))
        if writer is not None:
            self.registry.register(_CaptureCollector(writer))

    def model_label(self, name: str) -> str:
        """``name`` when the router serves it (a catalog model, a registry alias, a loaded
        adapter), else :data:`UNKNOWN_MODEL`."""
        router = self.router
        if name in router.routes or name in router.aliases:
            return name
        parsed = parse_model_name(name)
        base = router.routes.get(parsed.base) if parsed.adapter else None
        if base is not None and any(
            parsed.adapter in _adapter_names(r.engine) for r in base.replicas
        ):
            return name
        return UNKNOWN_MODEL


def _adapter_names(engine: object) -> list[str]:
    names = getattr(engine, "adapter_names", None)
    return list(names()) if callable(names) else []
