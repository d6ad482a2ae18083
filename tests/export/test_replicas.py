"""Two collectors on one database drain one outbox: every row is sent once, by exactly one of them
(PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the lease column under its single writer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from collector.export.config import parse
from collector.export.dispatcher import Dispatcher, backoff
from collector.export.exporters import build
from collector.export.metrics import ExportMetrics
from collector.store import Store
from collector.store import outbox_store as ob
from collector.store import schema as t
from tests.collector.factories import alert, batch
from tests.export.conftest import SOURCE
from tests.export.helpers import json_bodies
from tests.export.receivers import http_receiver


async def _seed(store: Store, n: int) -> None:
    store.alert_policy = type(store.alert_policy)(routes=lambda kind, type_, severity: ["sa"])
    for start in range(0, n, 50):
        await store.apply_batch(batch([], [alert(ip=f"10.{start}.0.{i}") for i in range(50)]))


async def test_two_replicas_share_the_outbox_without_double_sends(db_url: str) -> None:
    first, second = await Store.open(db_url), await Store.open(db_url)
    try:
        await _seed(first, 200)
        async with http_receiver() as receiver:
            text = f"exporters:\n  - {{name: sa, type: security_alert, url: '{receiver.url}', batch_size: 7}}\n"
            config = parse(text, "x.yaml", {})
            (exporter_config,) = config.exporters
            exporters = [build(exporter_config, SOURCE) for _ in range(4)]
            dispatchers = [
                Dispatcher(store, exp, ExportMetrics(CollectorRegistry()), f"replica-{i}")
                for i, (store, exp) in enumerate(zip([first, second, first, second], exporters, strict=True))
            ]

            async def drain(d: Dispatcher) -> int:
                sent = 0
                while True:
                    handled, failed = await d.step()
                    assert failed is None
                    if not handled:
                        return sent
                    sent += handled

            per_dispatcher = await asyncio.gather(*(drain(d) for d in dispatchers))
            for exp in exporters:
                await exp.close()
        received = Counter(r["SystemAlertId"] for r in json_bodies(receiver.requests))
        assert len(received) == 200 and set(received.values()) == {1}
        assert sum(per_dispatcher) == 200 and sum(1 for n in per_dispatcher if n) >= 2  # they really shared
        assert await ob.counts(first) == {}
    finally:
        await first.close()
        await second.close()


async def test_an_expired_lease_is_claimed_again(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        await _seed(store, 50)
        now = datetime.now(UTC)
        taken = await ob.claim(store, "sa", "crashed-replica", limit=10, lease=timedelta(seconds=30), now=now)
        assert len(taken) == 10
        others = await ob.claim(store, "sa", "replica-2", limit=100, lease=timedelta(seconds=30), now=now)
        assert len(others) == 40 and not {r.id for r in taken} & {r.id for r in others}
        later = await ob.claim(store, "sa", "replica-2", limit=100, lease=timedelta(seconds=30),
                               now=now + timedelta(seconds=31))
        assert len(later) == 50  # the crashed replica's rows and replica-2's own expired ones
        await ob.complete(store, taken, "crashed-replica")  # it lost the lease: deletes nothing
        assert (await ob.counts(store))[("sa", ob.QUEUED)] == 50
    finally:
        await store.close()


def test_backoff_is_capped_and_exponential() -> None:
    assert [backoff(a, 1, 60, jitter=0) for a in (1, 2, 3, 7, 8, 50)] == [1, 2, 4, 60, 60, 60]
    assert all(0.8 <= backoff(1, 1, 60) <= 1.2 for _ in range(100))


async def test_outbox_rows_commit_with_the_alert(sqlite_store: Store) -> None:
    """A batch whose transaction fails leaves neither the alert nor its outbox row behind."""
    store = sqlite_store
    store.alert_policy = type(store.alert_policy)(routes=lambda kind, type_, severity: ["sa"])
    original = store._apply_rows

    async def boom(conn: Any, rows: Any) -> int:
        await original(conn, rows)
        raise RuntimeError("crash after the writes, before the commit")

    store._apply_rows = boom  # type: ignore[method-assign]
    with contextlib.suppress(RuntimeError):
        await store.apply_batch(batch([], [alert()]))
    store._apply_rows = original  # type: ignore[method-assign]
    async with store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.outbox)) == 0
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.alerts)) == 0


async def test_dead_letters_older_than_their_retention_are_purged(db_url: str) -> None:
    """Dead-lettered rows are kept for ``delivery.dead_letter_days`` (for ``--requeue-dead``), then
    deleted, counted and logged: a receiver gone for good does not grow the outbox forever. Queued rows
    and other exporters' rows are never touched."""
    store = await Store.open(db_url)
    try:
        await _seed(store, 50)
        now = datetime.now(UTC)
        text = "exporters:\n  - {name: sa, type: security_alert, url: 'http://127.0.0.1:9', dead_letter_days: 7}\n"
        (exporter_config,) = parse(text, "x.yaml", {}).exporters
        assert exporter_config.delivery.dead_letter_days == 7
        exporter = build(exporter_config, SOURCE)
        metrics = ExportMetrics(CollectorRegistry())
        dispatcher = Dispatcher(store, exporter, metrics, "replica-0")
        rows = await ob.claim(store, "sa", "replica-0", limit=30, lease=timedelta(seconds=60), now=now)
        await ob.fail(store, [ob.Failure(r, None, "gone") for r in rows], "replica-0")  # 30 dead, 20 queued
        o = t.outbox.c
        old_ids = [r.id for r in rows[:12]]
        async with store.engine.begin() as conn:  # 12 of the dead, and 5 queued ones, are 8 days old
            await conn.execute(t.outbox.update().where(o.id.in_(old_ids)).values(created_at=now - timedelta(days=8)))
            queued = [r[0] for r in await conn.execute(sa.select(o.id).where(o.state == ob.QUEUED).limit(5))]
            await conn.execute(t.outbox.update().where(o.id.in_(queued)).values(created_at=now - timedelta(days=8)))
        assert await dispatcher.purge(now) == 12
        assert await ob.counts(store) == {("sa", ob.DEAD): 18, ("sa", ob.QUEUED): 20}
        assert metrics.purged.labels("sa")._value.get() == 12
        assert await dispatcher.purge(now) == 0  # nothing more is old enough
        await exporter.close()
    finally:
        await store.close()
