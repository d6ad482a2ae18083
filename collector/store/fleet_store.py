"""Storage of the fleet view (``collector.fleet_jobs``): per-sensor parameter sketches, the series the
job reads, the once-only claim of a finding, and retention.

Sketch upsert: the stored registers are the register-wise max of everything a sensor shipped for
(endpoint, parameter, window). A max of 1,024 byte registers has no portable SQL, so the rows of a
batch are read ``FOR UPDATE`` (PostgreSQL; SQLite has one writer), merged in Python and written back
under that lock; a row that does not exist yet is inserted without ``ON CONFLICT``, so when two
collectors insert it at once the loser fails with a unique violation and ``Store`` retries its
whole batch, which then finds the row and merges into it. No shipment is lost either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.fleet import EnumerationRow, WindowRow
from collector.store import alert_store
from collector.store import schema as t
from collector.store.rows import Row, alert_row
from sensor.behaviour.sketches import merge_registers
from sensor.events import AlertEvent

if TYPE_CHECKING:
    from collector.store.store import Store

_CHUNK = 500  # ids per IN (...) list

# ``endpoint_windows.status_classes`` when a sensor window arrives again (split across batches): the
# per-class sum of the stored and the new counts, computed by the database (no read into Python).
_MERGE_CLASSES = {
    "postgresql": (
        "(SELECT coalesce(json_object_agg(k, n), excluded.status_classes) FROM ("
        "SELECT key AS k, sum(value::bigint) AS n FROM ("
        "SELECT key, value FROM json_each_text(endpoint_windows.status_classes) UNION ALL "
        "SELECT key, value FROM json_each_text(excluded.status_classes)) AS u GROUP BY key ORDER BY key) AS s)"
    ),
    "sqlite": (
        "(SELECT coalesce(json_group_object(k, n), excluded.status_classes) FROM ("
        "SELECT key AS k, sum(value) AS n FROM ("
        "SELECT key, value FROM json_each(endpoint_windows.status_classes) UNION ALL "
        "SELECT key, value FROM json_each(excluded.status_classes)) GROUP BY key ORDER BY key))"
    ),
}


def merged_status_classes(dialect: str) -> Any:
    return sa.literal_column(_MERGE_CLASSES[dialect])


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


async def put_sketches(store: Store, conn: AsyncConnection, rows: list[Row]) -> None:
    """Upsert one batch's sketch rows (one sensor), keeping the register-wise max (see the module)."""
    if not rows:
        return
    ps = t.param_sketches.c
    sensor_id = rows[0]["sensor_id"]
    starts = sorted({r["window_start"] for r in rows})
    existing: dict[tuple[Any, ...], tuple[bytes, str]] = {}
    for eids in _chunks(sorted({r["endpoint_id"] for r in rows})):
        query = (
            sa.select(ps.endpoint_id, ps.location, ps.name, ps.window_start, ps.registers, ps.hash_id)
            .where(ps.sensor_id == sensor_id, ps.endpoint_id.in_(eids), ps.window_start.in_(starts))
            .order_by(ps.endpoint_id, ps.location, ps.name, ps.window_start)
        )
        if store.dialect == "postgresql":
            query = query.with_for_update()
        for r in await conn.execute(query):
            existing[(r.endpoint_id, r.location, r.name, r.window_start)] = (bytes(r.registers), r.hash_id)
    inserts: list[Row] = []
    updates: list[Row] = []
    for row in rows:  # sorted by key (rows.py), so concurrent batches lock in the same order
        found = existing.get((row["endpoint_id"], row["location"], row["name"], row["window_start"]))
        if found is None:
            inserts.append(row)
            continue
        registers, hash_id = found
        # A sketch of another hash key (the sensor's secret changed) cannot merge: the newer one wins.
        merged = merge_registers([registers, row["registers"]]) if hash_id == row["hash_id"] else row["registers"]
        if merged == registers and hash_id == row["hash_id"]:
            continue  # nothing new (a repeat): no write
        updates.append({
            "k_endpoint": row["endpoint_id"], "k_location": row["location"], "k_name": row["name"],
            "k_start": row["window_start"], "registers": merged, "hash_id": row["hash_id"],
            "updated_at": row["updated_at"],
        })  # fmt: skip
    if updates:
        stmt = t.param_sketches.update().where(
            ps.endpoint_id == sa.bindparam("k_endpoint"), ps.sensor_id == sensor_id,
            ps.location == sa.bindparam("k_location"), ps.name == sa.bindparam("k_name"),
            ps.window_start == sa.bindparam("k_start", type_=t.UTCDateTime()),
        )  # fmt: skip
        await conn.execute(stmt, updates)
    if inserts:
        await conn.execute(t.param_sketches.insert(), inserts)


# --- what the job reads -----------------------------------------------------------------------------


async def active_endpoints(store: Store, table: sa.Table, since: datetime) -> list[str]:
    """Endpoints with a window (``endpoint_windows``) or a sketch (``param_sketches``) since ``since``."""
    query = sa.select(table.c.endpoint_id).where(table.c.window_start >= since).distinct()
    async with store.engine.connect() as conn:
        return sorted(r[0] for r in await conn.execute(query))


async def window_rows(
    store: Store, endpoint_ids: Sequence[str], since: datetime, bucket: float
) -> tuple[list[WindowRow], int]:
    """Every sensor's windows of these endpoints since ``since`` that carry status classes, as one row
    per (endpoint, sensor, ``bucket``-wide epoch-aligned bucket): a sensor whose summary window
    (``--window``) is shorter than the bucket has its windows added up, so sensors with different
    windows still make one series per endpoint. Windows wider than the bucket cannot be split: they are
    left out and counted (the second value)."""
    w, e = t.endpoint_windows.c, t.endpoints.c
    query = (
        sa.select(e.api, e.method, e.path, w.sensor_id, w.window_start, w.window_end, w.status_classes)
        .join(t.endpoints, e.id == w.endpoint_id)
        .where(w.endpoint_id.in_(endpoint_ids), w.window_start >= since, w.status_classes.is_not(None))
    )
    merged: dict[tuple[tuple[str, str, str], str, float], dict[str, int]] = {}
    too_wide = 0
    async with store.engine.connect() as conn:
        for r in await conn.execute(query):
            if not isinstance(r.status_classes, dict) or not r.status_classes:
                continue
            start = r.window_start.timestamp()
            if r.window_end.timestamp() - start > bucket + 1e-6:
                too_wide += 1
                continue
            key = ((r.api, r.method, r.path), r.sensor_id, start - start % bucket)
            acc = merged.setdefault(key, {})
            for status_class, n in r.status_classes.items():
                acc[status_class] = acc.get(status_class, 0) + int(n)
    return [(endpoint, start, classes) for (endpoint, _, start), classes in merged.items()], too_wide


async def sketch_rows(
    store: Store, endpoint_ids: Sequence[str], since: datetime
) -> tuple[list[EnumerationRow], dict[tuple[Any, ...], float]]:
    """Every sensor's sketches of these endpoints since ``since``, as ``distributed_enumerations``
    rows whose parameter is ``location:name`` plus ``#hash_id`` when the rows of one
    (endpoint, parameter) disagree on the hash key (sketches of different keys must not merge);
    and the width of each (endpoint, parameter, window)."""
    ps, e = t.param_sketches.c, t.endpoints.c
    query = (
        sa.select(e.api, e.method, e.path, ps.location, ps.name, ps.window_start, ps.window_seconds, ps.hash_id,
                  ps.registers)
        .join(t.endpoints, e.id == ps.endpoint_id)
        .where(ps.endpoint_id.in_(endpoint_ids), ps.window_start >= since)
    )  # fmt: skip
    async with store.engine.connect() as conn:
        found = list(await conn.execute(query))
    keys: dict[tuple[Any, ...], set[str]] = {}
    for r in found:
        keys.setdefault((r.api, r.method, r.path, r.location, r.name), set()).add(r.hash_id)
    rows: list[EnumerationRow] = []
    widths: dict[tuple[Any, ...], float] = {}
    for r in found:
        endpoint = (r.api, r.method, r.path)
        param = f"{r.location}:{r.name}"
        if len(keys[(*endpoint, r.location, r.name)]) > 1:
            param += f"#{r.hash_id}"
        start = r.window_start.timestamp()
        rows.append((endpoint, param, start, bytes(r.registers)))
        widths[(endpoint, param, start)] = float(r.window_seconds)
    return rows, widths


# --- raising a finding once ------------------------------------------------------------------------


async def raise_once(
    store: Store, event: AlertEvent, *, endpoint_id: str, scope: str, window_start: datetime, now: datetime
) -> bool:
    """Claim (type, endpoint, scope, window) and raise ``event`` through the ingest alert path, in one
    transaction: only the collector whose insert created the mark raises it. True when this call did."""

    async def work(conn: AsyncConnection) -> tuple[bool, int]:
        claim = store.insert(t.fleet_marks).values(
            type=event.type, endpoint_id=endpoint_id, scope=scope[:300], window_start=window_start, created_at=now
        )
        if (await conn.execute(claim.on_conflict_do_nothing())).rowcount != 1:
            return False, 0
        queued = await alert_store.apply_alerts(store, conn, [alert_row(event)], now, store.alert_policy)
        return True, queued

    raised, queued = await store.write(work)
    if queued:
        store.alert_policy.notify()  # after the commit: the dispatchers can see the rows now
    return bool(raised)


# --- retention ---------------------------------------------------------------------------------------


async def prune(store: Store, before: datetime) -> int:
    """Delete sketches and marks of windows that started before ``before`` (past every look-back)."""

    async def work(conn: AsyncConnection) -> int:
        n = 0
        for table in (t.param_sketches, t.fleet_marks):
            result = await conn.execute(table.delete().where(table.c.window_start < before))
            n += int(result.rowcount or 0)
        return n

    deleted: int = await store.write(work)
    return deleted


__all__ = [
    "active_endpoints", "merged_status_classes", "prune", "put_sketches", "raise_once", "sketch_rows", "window_rows",
]  # fmt: skip
