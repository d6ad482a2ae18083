"""The export outbox: enqueue (inside the caller's transaction), claim, complete, retry, dead-letter.

Delivery is at least once: a row leaves the table only after its exporter confirmed the send. Several
collectors (or ``apiward export --snapshot`` next to a running collector) may drain the same outbox:
a claim sets a lease (owner and expiry) on the rows it takes, and on PostgreSQL the claiming SELECT
uses ``FOR UPDATE SKIP LOCKED`` so two claimers never wait on, or take, each other's rows. On SQLite
the database has a single writer, so the lease alone keeps claims apart. A dispatcher that dies
holding a lease only delays its rows until the lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.store import schema as t

if TYPE_CHECKING:
    from collector.store.store import Store

QUEUED = "queued"
DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    exporter: str
    event: str
    subject_id: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class Failure:
    """What to do with a row whose send failed."""

    row: OutboxRow
    retry_at: datetime | None  # None: attempts exhausted, dead-letter it
    error: str


async def enqueue(
    conn: AsyncConnection,
    exporters: Sequence[str],
    event: str,
    subject_id: str,
    payload: dict[str, Any],
    *,
    now: datetime | None = None,
) -> int:
    """Queue one event for each exporter, in the caller's transaction; returns rows written."""
    if not exporters:
        return 0
    created = now or datetime.fromisoformat(payload["at"])
    rows = [
        {
            "exporter": name, "event": event, "subject_id": subject_id[:128], "payload": payload,
            "created_at": created, "state": QUEUED, "attempts": 0, "next_attempt_at": created,
            "lease_owner": None, "lease_until": None, "last_error": None,
        }
        for name in exporters
    ]
    await conn.execute(t.outbox.insert(), rows)
    return len(rows)


async def claim(
    store: Store, exporter: str, owner: str, *, limit: int, lease: timedelta, now: datetime
) -> list[OutboxRow]:
    """Lease up to ``limit`` due rows of one exporter, oldest first."""
    o = t.outbox.c
    due = (
        sa.select(o.id)
        .where(
            o.exporter == exporter,
            o.state == QUEUED,
            o.next_attempt_at <= sa.literal(now, t.UTCDateTime()),
            sa.or_(o.lease_until.is_(None), o.lease_until < sa.literal(now, t.UTCDateTime())),
        )
        .order_by(o.id)
        .limit(limit)
    )
    if store.dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        t.outbox.update()
        .where(o.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_until=now + lease)
        .returning(o.id, o.exporter, o.event, o.subject_id, o.payload, o.created_at, o.attempts)
    )

    async def work(conn: AsyncConnection) -> list[OutboxRow]:
        return [OutboxRow(*r) for r in await conn.execute(stmt)]

    rows: list[OutboxRow] = await store.write(work)
    return sorted(rows, key=lambda r: r.id)


async def complete(store: Store, rows: Sequence[OutboxRow], owner: str) -> None:
    """Delivered: the rows go (only if we still hold them; a lost lease means someone else sends)."""
    if not rows:
        return
    o = t.outbox.c

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(t.outbox.delete().where(o.id.in_([r.id for r in rows]), o.lease_owner == owner))

    await store.write(work)


async def fail(store: Store, failures: Sequence[Failure], owner: str) -> None:
    """Schedule a retry, or dead-letter the rows whose attempts are used up; the lease is released."""
    if not failures:
        return
    o = t.outbox.c

    async def work(conn: AsyncConnection) -> None:
        for f in failures:
            values: dict[str, Any] = {
                "attempts": o.attempts + 1, "lease_owner": None, "lease_until": None, "last_error": f.error[:500],
            }
            if f.retry_at is None:
                values["state"] = DEAD
            else:
                values["next_attempt_at"] = f.retry_at
            await conn.execute(t.outbox.update().where(o.id == f.row.id, o.lease_owner == owner).values(**values))

    await store.write(work)


async def counts(store: Store) -> dict[tuple[str, str], int]:
    """Rows per (exporter, state)."""
    o = t.outbox.c
    query = sa.select(o.exporter, o.state, sa.func.count()).group_by(o.exporter, o.state)
    async with store.engine.connect() as conn:
        return {(e, s): int(n) for e, s, n in await conn.execute(query)}


async def requeue_dead(store: Store, exporter: str | None, now: datetime) -> int:
    """Give dead-lettered rows a fresh set of attempts (after the receiver was fixed)."""
    o = t.outbox.c
    stmt = t.outbox.update().where(o.state == DEAD)
    if exporter is not None:
        stmt = stmt.where(o.exporter == exporter)
    stmt = stmt.values(state=QUEUED, attempts=0, next_attempt_at=now, lease_owner=None, lease_until=None)

    async def work(conn: AsyncConnection) -> int:
        return int((await conn.execute(stmt)).rowcount)

    n: int = await store.write(work)
    return n


async def purge_dead(store: Store, exporter: str, before: datetime) -> int:
    """Delete an exporter's dead-lettered rows created before ``before``; returns how many."""
    o = t.outbox.c
    stmt = t.outbox.delete().where(o.exporter == exporter, o.state == DEAD, o.created_at < before)

    async def work(conn: AsyncConnection) -> int:
        return int((await conn.execute(stmt)).rowcount)

    n: int = await store.write(work)
    return n


__all__ = ["DEAD", "QUEUED", "Failure", "OutboxRow", "claim", "complete", "counts", "enqueue", "fail", "purge_dead",
           "requeue_dead"]
