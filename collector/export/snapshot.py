"""``apiward export --snapshot``: queue the full current state for some exporters, then deliver it.

Every alert except suppressed ones (with its current status) and every unhealthy recommendation goes
into the outbox as ``alert.snapshot`` / ``recommendation.snapshot``; receivers de-duplicate by alert
id. The rows are delivered by this command's own dispatchers and by any collector running on the same
database, whichever claims them first (leases keep them apart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from collector import recommendations as recs
from collector.export.config import ExportConfig, ExporterConfig
from collector.export.dispatcher import Dispatcher
from collector.export.exporters import build
from collector.export.metrics import ExportMetrics
from collector.export.service import evaluate_recommendations, owner_id, recommendation_payload, source
from collector.store import AlertFilter, AlertRow, Store, alert_store
from collector.store import outbox_store as ob
from collector.store.alert_store import ALERT_SNAPSHOT, RECOMMENDATION_SNAPSHOT, SYSTEM


def _routes(exporters: Sequence[ExporterConfig]) -> ExportConfig:
    return ExportConfig(tuple(exporters))


async def enqueue_snapshot(
    store: Store, exporters: Sequence[ExporterConfig], loaded: list[recs.Recommendation], now: datetime | None = None
) -> int:
    """Queue the snapshot; returns outbox rows written."""
    now = now or datetime.now(UTC)
    config = _routes(exporters)
    queued, cursor = 0, None
    while True:
        page = await store.list_alerts(AlertFilter(), 500, cursor)
        rows = [a for a in page.items if a.status != "suppressed"]

        async def work(conn: AsyncConnection, rows: list[AlertRow] = rows) -> int:
            n = 0
            for a in rows:
                payload = alert_store.alert_payload(ALERT_SNAPSHOT, a, now, SYSTEM)
                n += await ob.enqueue(conn, config.routes("alert", a.type, a.severity), ALERT_SNAPSHOT, a.id,
                                      payload)
            return n

        queued += int(await store.write(work))
        cursor = page.next_cursor
        if cursor is None:
            break
    unhealthy = [i for i in await evaluate_recommendations(store, loaded, now) if i["status"] == "unhealthy"]

    async def recs_work(conn: AsyncConnection) -> int:
        n = 0
        for item in unhealthy:
            payload = recommendation_payload(item)
            event = {"event": RECOMMENDATION_SNAPSHOT, "at": now.isoformat(), "by": SYSTEM, "recommendation": payload}
            n += await ob.enqueue(conn, config.routes("recommendation", item["id"], item["severity"]),
                                  RECOMMENDATION_SNAPSHOT, item["id"], event)
        return n

    queued += int(await store.write(recs_work))
    return queued


async def drain(store: Store, exporters: Sequence[ExporterConfig], wait_seconds: float) -> dict[str, dict[str, int]]:
    """Deliver until these exporters have nothing queued or ``wait_seconds`` pass; per-exporter counts."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = ExportMetrics(registry)
    owner = owner_id()
    built = [build(c, source()) for c in exporters]
    dispatchers = [Dispatcher(store, e, metrics, owner) for e in built]
    deadline = time.monotonic() + wait_seconds
    try:
        while time.monotonic() < deadline:
            counts = await ob.counts(store)
            if not any(counts.get((c.name, ob.QUEUED), 0) for c in exporters):
                break
            handled = 0
            for d in dispatchers:
                done, _ = await d.step()
                handled += done
            if not handled:
                await asyncio.sleep(0.2)  # rows waiting for their back-off, or leased by a collector
    finally:
        for e in built:
            await e.close()
    counts = await ob.counts(store)

    def total(metric: str, name: str) -> int:
        return int(registry.get_sample_value(f"{metric}_total", {"exporter": name}) or 0)

    return {
        c.name: {
            "sent": total("apiward_export_sent", c.name),
            "dead_lettered": total("apiward_export_dead_lettered", c.name),
            "queued": counts.get((c.name, ob.QUEUED), 0),
        }
        for c in exporters
    }


__all__ = ["drain", "enqueue_snapshot"]
