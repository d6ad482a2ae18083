"""When posture is recomputed: after each ingest (the touched endpoints), after a spec import (the
API's endpoints), and on a periodic sweep (every endpoint: time alone ends "active", starts
"inactive_30d", and the 30-day reset and window retention run there too).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from apiward.logs import get_logger
from apiward.tasks import stop_tasks
from collector.posture import evaluate
from collector.store import Store, fleet_store
from collector.store import posture_store as ps
from collector.store.ids import endpoint_id
from sensor.events import Batch

log = get_logger("collector.posture")
_SWEEP_CHUNK = 500
StoreGetter = Callable[[], Store | None]
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def touched_endpoints(batch: Batch) -> list[str]:
    """Endpoints a batch changed facts of (summaries and alerts)."""
    out = {endpoint_id(s.api, s.method, s.path) for s in batch.summaries}
    out.update(endpoint_id(a.endpoint.api, a.endpoint.method, a.endpoint.path) for a in batch.alerts)
    return sorted(out)


async def refresh(store: Store, endpoint_ids: Iterable[str], now: datetime | None = None) -> int:
    """Re-evaluate these endpoints' findings; returns how many endpoints were evaluated."""
    now = now or datetime.now(UTC)
    wanted = list(endpoint_ids)
    done = 0
    for start in range(0, len(wanted), _SWEEP_CHUNK):
        facts = await store.endpoint_facts(wanted[start : start + _SWEEP_CHUNK], now)
        await ps.sync_findings(store, [(f, evaluate(f, now)) for f in facts], now)
        done += len(facts)
    return done


async def sweep(
    store: Store, retention_days: int, now: datetime | None = None, *, fleet_horizon: timedelta | None = None
) -> dict[str, int]:
    """The periodic pass: reset stale facts, compact old windows, re-evaluate every endpoint; with
    ``fleet_horizon``, delete the fleet view's sketches and marks of windows older than it."""
    now = now or datetime.now(UTC)
    await ps.reset_stale_facts(store, now)
    compacted = await ps.compact_windows(store, now, retention_days)
    evaluated = await refresh(store, await ps.endpoint_ids(store), now)
    result = {"evaluated": evaluated, "compacted_windows": compacted}
    if fleet_horizon is not None:
        result["pruned_fleet_rows"] = await fleet_store.prune(store, now - fleet_horizon)
    return result


def sweep_context(
    get_store: StoreGetter, interval: float, retention_days: int, *, fleet_horizon: timedelta | None = None
) -> CleanupCtx:
    """A ``cleanup_ctx`` entry running ``sweep`` every ``interval`` seconds (0 turns it off)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_loop(get_store, interval, retention_days, fleet_horizon), name="posture-sweep")
        try:
            yield
        finally:
            await stop_tasks([task])

    return ctx


async def _loop(
    get_store: StoreGetter, interval: float, retention_days: int, fleet_horizon: timedelta | None = None
) -> None:
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        store = get_store()
        if store is None:
            continue
        try:
            result = await sweep(store, retention_days, fleet_horizon=fleet_horizon)
            log.info("posture_sweep", **result)
        except Exception:  # the next sweep tries again; a failing one must not end the loop
            log.exception("posture_sweep_failed")


__all__ = ["refresh", "sweep", "sweep_context", "touched_endpoints"]
