"""Prometheus metrics, one registry per application (tests and the demo run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class CollectorMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batches = Counter(
            "apiward_collector_batches",
            "Event batches received, by result (ingested, duplicate, rejected)",
            ["result"],
            registry=self.registry,
        )
        self.summaries = Counter(
            "apiward_collector_summaries", "Endpoint summaries ingested", registry=self.registry
        )
        self.alerts = Counter("apiward_collector_alert_events", "Alert events ingested", registry=self.registry)
        self.http_requests = Counter(
            "apiward_collector_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "apiward_collector_http_request_seconds",
            "HTTP request handling time by route template",
            ["route"],
            registry=self.registry,
        )
        for result in ("ingested", "duplicate", "rejected"):
            self.batches.labels(result)  # present from the start, so rates work from zero

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
