"""The collector's export lifecycle: install the alert policy on the store, run one dispatcher per
exporter and the recommendation watcher, and stop them all on shutdown (a ``cleanup_ctx`` entry).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from apiward.logs import get_logger
from apiward.tasks import stop_tasks
from collector import recommendations as recs
from collector.export.config import ExportConfig
from collector.export.dispatcher import Dispatcher
from collector.export.exporters import Exporter, build
from collector.export.metrics import ExportMetrics
from collector.export.records import Source
from collector.settings import CollectorSettings
from collector.state import METRICS, RECOMMENDATIONS, STORE
from collector.store import Store, alert_store
from collector.store import posture_store as ps

log = get_logger("collector.export")
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]
MAX_AFFECTED_IN_EXPORT = 50  # a recommendation's affected endpoints listed in one export record


def owner_id() -> str:
    """Who holds an outbox lease: unique per process, readable in the table."""
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def source() -> Source:
    """This collector as the sender: the installed package's version, the machine's host name."""
    try:
        version = importlib.metadata.version("apiward")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        version = "0.0.0"
    return Source(version=version, hostname=socket.gethostname())


def policy(settings: CollectorSettings, config: ExportConfig, notify: Callable[[], None]) -> alert_store.AlertPolicy:
    return alert_store.AlertPolicy(
        group_window=timedelta(seconds=settings.alert_group_window),
        suppress=settings.suppressions.match,
        routes=config.routes,
        notify=notify,
    )


def recommendation_payload(item: dict[str, Any]) -> dict[str, Any]:
    affected = item["affected_endpoints"]
    keep = ("id", "title", "severity", "description", "remediation", "finding_types", "status")
    return {
        **{k: item[k] for k in keep},
        "affected_count": len(affected),
        "affected_endpoints": [
            {k: e[k] for k in ("id", "api", "method", "path")} for e in affected[:MAX_AFFECTED_IN_EXPORT]
        ],
    }


async def evaluate_recommendations(store: Store, loaded: list[recs.Recommendation], now: datetime) -> list[
    dict[str, Any]
]:
    found = await ps.open_findings_by_type(store, recs.finding_types_needed(loaded))
    counts = await store.inventory_counts(now)
    return recs.evaluate(loaded, found, counts["endpoints"])


async def check_recommendations(
    store: Store, loaded: list[recs.Recommendation], config: ExportConfig, now: datetime | None = None
) -> int:
    """Record each recommendation's status; returns export rows queued for those that became unhealthy."""
    now = now or datetime.now(UTC)
    queued = 0
    for item in await evaluate_recommendations(store, loaded, now):
        queued += await alert_store.record_recommendation(store, recommendation_payload(item), config.routes, now)
    return queued


async def _watch_recommendations(
    store: Store, loaded: list[recs.Recommendation], config: ExportConfig, interval: float, wake: Callable[[], None]
) -> None:
    while True:
        try:
            if await check_recommendations(store, loaded, config):
                wake()
        except asyncio.CancelledError:
            raise
        except Exception:  # the database may be away; the next round tries again
            log.exception("recommendation_check_failed")
        await asyncio.sleep(interval)


def export_context(settings: CollectorSettings) -> CleanupCtx:
    """The ``cleanup_ctx`` entry; appended after the store's own, so the store is open here."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE].store
        assert store is not None, "the export context must come after the store lifecycle"
        config = settings.exporters
        metrics = ExportMetrics(app[METRICS].registry)
        owner, src = owner_id(), source()
        exporters: list[Exporter] = [build(c, src) for c in config.exporters]
        dispatchers = [Dispatcher(store, e, metrics, owner) for e in exporters]

        def notify() -> None:
            for d in dispatchers:
                d.wake.set()

        store.alert_policy = policy(settings, config, notify)
        tasks = [asyncio.create_task(d.run(), name=f"export-{d.name}") for d in dispatchers]
        if any("recommendations" in c.events for c in config.exporters) and settings.recommendation_check_seconds > 0:
            tasks.append(asyncio.create_task(
                _watch_recommendations(store, app[RECOMMENDATIONS], config, settings.recommendation_check_seconds,
                                       notify),
                name="export-recommendations",
            ))
        log.info("export_started", exporters=[c.name for c in config.exporters], owner=owner)
        try:
            yield
        finally:
            await stop_tasks(tasks)
            for exporter in exporters:
                with contextlib.suppress(Exception):
                    await exporter.close()
            store.alert_policy = alert_store.AlertPolicy()

    return ctx


__all__ = ["check_recommendations", "evaluate_recommendations", "export_context", "owner_id", "policy",
           "recommendation_payload", "source"]
