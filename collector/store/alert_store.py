"""Alert lifecycle writes: grouping within a window, suppression, status history, export events.

Everything here runs inside the caller's transaction (the ingest batch, or a status change), so the
alert, its history and its outbox rows commit together or not at all.

Grouping rule: an occurrence (type, endpoint, client IP, hashed principal) joins the group's alert
whose activity it overlaps or comes within ``group_window`` of (before its first sighting or after its
last). When no alert of the group is that close, it opens a new alert, generation N+1 of the group
(``ids.alert_id(..., generation=N)``): a quiet period longer than the window ends an alert, a
continuous attack stays one alert with a growing count.

Export events (the ``event`` of an outbox row), streamed to every exporter whose filter accepts them:
``alert.created`` (a new active alert), ``alert.reopened`` (new activity on a resolved alert),
``alert.updated`` (an active alert's severity changed, or its count crossed a power of two: 2, 4, 8,
... so a noisy alert costs a SIEM a few dozen records, not one per batch), ``alert.status_changed``
(an admin changed the status). Suppressed alerts, and updates of dismissed ones, are never exported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.store import ids
from collector.store import schema as t
from collector.store.outbox_store import enqueue
from collector.store.rows import Row
from collector.suppressions import AlertKey

if TYPE_CHECKING:
    from collector.store.store import AlertRow, Store

SYSTEM = "apiward"  # "who" for changes the collector makes itself
ALERT_CREATED = "alert.created"
ALERT_UPDATED = "alert.updated"
ALERT_REOPENED = "alert.reopened"
ALERT_STATUS_CHANGED = "alert.status_changed"
ALERT_SNAPSHOT = "alert.snapshot"
RECOMMENDATION_UNHEALTHY = "recommendation.unhealthy"
RECOMMENDATION_SNAPSHOT = "recommendation.snapshot"


def _never(key: AlertKey, now: datetime) -> str | None:
    return None


def _nowhere(kind: str, type_: str, severity: str) -> Sequence[str]:
    return ()


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """How the store treats alerts; the export service installs the configured one at start-up."""

    group_window: timedelta = timedelta(hours=24)
    suppress: Callable[[AlertKey, datetime], str | None] = _never  # -> id of the matching rule
    # (kind "alert" | "recommendation", alert type or recommendation id, severity) -> exporter names
    routes: Callable[[str, str, str], Sequence[str]] = _nowhere
    notify: Callable[[], None] = _nothing  # called after a commit that queued export events


def alert_json(row: AlertRow) -> dict[str, Any]:
    """An alert row as JSON (the outbox payload): timestamps as ISO 8601."""
    values = asdict(row)
    for name in ("first_seen", "last_seen", "status_at"):
        value = values[name]
        values[name] = value.isoformat() if value is not None else None
    return values


def alert_payload(event: str, row: AlertRow, at: datetime, by: str) -> dict[str, Any]:
    return {"event": event, "at": at.isoformat(), "by": by, "alert": alert_json(row)}


def _doubled(before: int, after: int) -> bool:
    return before.bit_length() < after.bit_length()


async def _group_target(
    store: Store, conn: AsyncConnection, row: Row, window: timedelta
) -> tuple[str, AlertRow | None]:
    """The id the occurrence goes to, and that alert as it was (None when it opens a new one)."""
    from collector.store.store import _alert

    a = t.alerts.c
    same_group = (
        a.endpoint_id == row["endpoint_id"],
        a.type == row["type"],
        a.client_ip == row["client_ip"],
        a.principal == row["principal"],
    )
    near = sa.select(t.alerts).where(
        *same_group,
        a.last_seen >= sa.literal(row["first_seen"] - window, t.UTCDateTime()),
        a.first_seen <= sa.literal(row["last_seen"] + window, t.UTCDateTime()),
    ).order_by(a.last_seen.desc(), a.id).limit(1)
    # The lock makes "what was it before" exact when two collectors update the same alert at once.
    found = (await conn.execute(near.with_for_update() if store.dialect == "postgresql" else near)).mappings().first()
    if found is not None:
        prior = _alert(found)
        return prior.id, prior
    generation = int(await conn.scalar(sa.select(sa.func.count()).select_from(t.alerts).where(*same_group)) or 0)
    new_id = ids.alert_id(
        row["type"], row["api"], row["method"], row["path"],
        client_ip=row["client_ip"], principal=row["principal"], generation=generation,
    )
    return new_id, None


def _merge(store: Store, ex: Any, received: datetime) -> dict[str, Any]:
    a = t.alerts.c
    newer = ex.last_seen >= a.last_seen
    # New activity after an alert was resolved re-opens it; dismissed and suppressed alerts keep their
    # status (the operator, or a rule, said this group is not interesting).
    reopen = sa.and_(a.status == "resolved", ex.last_seen > a.status_at)
    values: dict[str, Any] = {
        n: sa.case((newer, ex[n]), else_=a[n]) for n in ("title", "severity", "evidence", "rule_ids")
    }
    values.update(
        count=a.count + ex.count,
        first_seen=store._least(a.first_seen, ex.first_seen),
        last_seen=store._greatest(a.last_seen, ex.last_seen),
        status=sa.case((reopen, sa.literal("active")), else_=a.status),
        status_by=sa.case((reopen, sa.literal(SYSTEM)), else_=a.status_by),
        status_at=sa.case((reopen, sa.literal(received, t.UTCDateTime())), else_=a.status_at),
    )
    return values


async def _history(
    conn: AsyncConnection, alert_id: str, *, at: datetime, by: str, before: str | None, after: str, note: str | None
) -> None:
    await conn.execute(
        t.alert_history.insert().values(
            alert_id=alert_id, at=at, by=by[:200], from_status=before, to_status=after, note=note and note[:300]
        )
    )


async def apply_alerts(
    store: Store, conn: AsyncConnection, rows: list[Row], received: datetime, policy: AlertPolicy
) -> int:
    """Upsert the batch's alert rows; returns how many outbox rows were queued."""
    from collector.store.store import _alert

    queued = 0
    for source in rows:
        target, prior = await _group_target(store, conn, source, policy.group_window)
        row = dict(source, id=target)
        rule = None
        if prior is None:
            key = AlertKey(row["type"], row["api"], row["method"], row["path"], row["client_ip"], row["principal"])
            rule = policy.suppress(key, received)
            if rule is not None:
                row.update(status="suppressed", status_by=SYSTEM, status_at=received)
        stmt = store.insert(t.alerts).values(row)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=_merge(store, stmt.excluded, received))
        after = _alert((await conn.execute(stmt.returning(*t.alerts.c))).mappings().one())
        # Counts only grow and start at >= 1, so an untouched count means this statement inserted the row.
        inserted = prior is None and after.count == row["count"]
        event = None
        if inserted:
            note = f"suppressed by rule {rule}" if after.status == "suppressed" else None
            await _history(conn, after.id, at=received, by=SYSTEM, before=None, after=after.status, note=note)
            event = ALERT_CREATED if after.status == "active" else None
        elif prior is not None and prior.status == "resolved" and after.status == "active":
            await _history(
                conn, after.id, at=received, by=SYSTEM, before="resolved", after="active", note="new activity"
            )
            event = ALERT_REOPENED
        elif after.status == "active":
            severity_changed = prior is not None and prior.severity != after.severity
            if severity_changed or _doubled(after.count - row["count"], after.count):
                event = ALERT_UPDATED
        if event is not None:
            exporters = policy.routes("alert", after.type, after.severity)
            queued += await enqueue(conn, exporters, event, after.id, alert_payload(event, after, received, SYSTEM))
    return queued


async def set_status(
    store: Store, conn: AsyncConnection, alert_id: str, status: str, *, who: str, at: datetime, policy: AlertPolicy
) -> tuple[AlertRow | None, int]:
    """Change one alert's status with history and an export event; (the alert after, rows queued)."""
    from collector.store.store import _alert

    query = sa.select(t.alerts).where(t.alerts.c.id == alert_id)
    if store.dialect == "postgresql":
        query = query.with_for_update()
    found = (await conn.execute(query)).mappings().first()
    if found is None:
        return None, 0
    before = _alert(found)
    stmt = (
        t.alerts.update()
        .where(t.alerts.c.id == alert_id)
        .values(status=status, status_by=who, status_at=at)
        .returning(*t.alerts.c)
    )
    after = _alert((await conn.execute(stmt)).mappings().one())
    if before.status == status:
        return after, 0
    await _history(conn, alert_id, at=at, by=who, before=before.status, after=status, note=None)
    exporters = policy.routes("alert", after.type, after.severity)
    queued = await enqueue(
        conn, exporters, ALERT_STATUS_CHANGED, alert_id, alert_payload(ALERT_STATUS_CHANGED, after, at, who)
    )
    return after, queued


async def record_recommendation(
    store: Store, payload: dict[str, Any], routes: Callable[[str, str, str], Sequence[str]], now: datetime
) -> int:
    """Store a recommendation's status; queue ``recommendation.unhealthy`` when it just became so.

    The conditional write decides the edge, so with two collectors only the one whose write changed
    the row queues the event.
    """
    rec_id, status = str(payload["id"]), str(payload["status"])
    r = t.recommendation_state.c

    async def work(conn: AsyncConnection) -> int:
        inserted = await conn.execute(
            store.insert(t.recommendation_state).values(id=rec_id, status=status, changed_at=now)
            .on_conflict_do_nothing()
        )
        changed = inserted.rowcount == 1
        if not changed:
            updated = await conn.execute(
                t.recommendation_state.update().where(r.id == rec_id, r.status != status)
                .values(status=status, changed_at=now)
            )
            changed = updated.rowcount == 1
        if not changed or status != "unhealthy":
            return 0
        exporters = routes("recommendation", rec_id, str(payload["severity"]))
        event = {"event": RECOMMENDATION_UNHEALTHY, "at": now.isoformat(), "by": SYSTEM, "recommendation": payload}
        return await enqueue(conn, exporters, RECOMMENDATION_UNHEALTHY, rec_id, event)

    queued: int = await store.write(work)
    return queued


@dataclass(frozen=True, slots=True)
class HistoryRow:
    at: datetime
    by: str
    from_status: str | None
    to_status: str
    note: str | None


async def alert_history(store: Store, alert_id: str) -> list[HistoryRow]:
    h = t.alert_history.c
    query = sa.select(h.at, h.by, h.from_status, h.to_status, h.note).where(h.alert_id == alert_id).order_by(h.id)
    async with store.engine.connect() as conn:
        return [HistoryRow(*r) for r in await conn.execute(query)]


__all__ = [
    "ALERT_CREATED",
    "ALERT_REOPENED",
    "ALERT_SNAPSHOT",
    "ALERT_STATUS_CHANGED",
    "ALERT_UPDATED",
    "RECOMMENDATION_SNAPSHOT",
    "RECOMMENDATION_UNHEALTHY",
    "SYSTEM",
    "AlertPolicy",
    "HistoryRow",
    "alert_history",
    "alert_json",
    "alert_payload",
    "apply_alerts",
    "record_recommendation",
    "set_status",
]
