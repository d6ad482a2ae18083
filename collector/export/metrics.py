"""Per-exporter delivery counters on the collector's ``/metrics`` (its own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ExportMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter("apiward_export_sent", "Export records delivered, by exporter", ["exporter"],
                            registry=registry)
        self.retried = Counter("apiward_export_retried", "Export records scheduled for another attempt",
                               ["exporter"], registry=registry)
        self.dead_lettered = Counter("apiward_export_dead_lettered",
                                     "Export records given up on after their last attempt", ["exporter"],
                                     registry=registry)
        self.queued = Gauge("apiward_export_queued", "Export records waiting in the outbox (all collectors)",
                            ["exporter"], registry=registry)
        self.dead = Gauge("apiward_export_dead_letter_rows", "Dead-lettered records kept in the outbox",
                          ["exporter"], registry=registry)
        self.purged = Counter("apiward_export_dead_letter_purged",
                              "Dead-lettered records deleted after delivery.dead_letter_days", ["exporter"],
                              registry=registry)

    def register(self, exporter: str) -> None:
        """Make the series exist at zero, so rates and alerts work from the first scrape."""
        for metric in (self.sent, self.retried, self.dead_lettered, self.queued, self.dead, self.purged):
            metric.labels(exporter)


__all__ = ["ExportMetrics"]
