"""Store behaviour on SQLite and PostgreSQL: idempotency, exact counters, grouping, paging."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from collector.store import AlertFilter, EndpointFilter, InvalidCursor, Store
from collector.store import schema as t
from collector.store.migrations import LATEST_VERSION, current_version
from sensor.events import SensorStats
from tests.collector.factories import NOW, DataTypeSeen, ParamSeen, alert, batch, summary


async def _totals(store: Store) -> dict[str, int]:
    page = await store.list_endpoints(datetime.now(UTC), limit=500)
    return {f"{e.method} {e.path}": e.requests for e in page.items}


async def test_migrations_record_version_and_reopen(store: Store, db_url: str) -> None:
    async with store.engine.connect() as conn:
        assert await current_version(conn) == LATEST_VERSION
    again = await Store.open(db_url)  # a second open finds the schema current and changes nothing
    try:
        async with again.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.schema_version))).all()
        assert [r.version for r in rows] == list(range(1, LATEST_VERSION + 1))
    finally:
        await again.close()


async def test_a_version_5_database_gains_the_sessions_table_and_keeps_its_data(db_url: str) -> None:
    old = await Store.open(db_url)
    try:
        assert await old.apply_batch(batch([summary(requests=3)]))
        async with old.engine.begin() as conn:  # what a version-5 collector left behind
            await conn.run_sync(t.dashboard_sessions.drop)
            await conn.execute(t.schema_version.delete().where(t.schema_version.c.version == 6))
    finally:
        await old.close()
    store = await Store.open(db_url)
    try:
        async with store.engine.connect() as conn:
            assert await current_version(conn) == LATEST_VERSION >= 6
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            assert "dashboard_sessions" in tables
        assert await _totals(store) == {"GET /users/{id}": 3}
    finally:
        await store.close()


async def test_same_batch_twice_is_counted_once(store: Store) -> None:
    b = batch([summary(requests=7)], [alert(count=2)])
    assert await store.apply_batch(b) is True
    assert await store.apply_batch(b) is False
    assert await _totals(store) == {"GET /users/{id}": 7}
    alerts = (await store.list_alerts()).items
    assert [a.count for a in alerts] == [2]
    (sensor,) = await store.list_sensors()
    assert sensor.batches == 1
    assert await store.batch_count() == 1


async def test_counters_add_up_across_batches(store: Store) -> None:
    s1 = summary(
        requests=3,
        status_classes={"2xx": 2, "4xx": 1},
        auth_schemes={"jwt": 2, "none": 1},
        params=[ParamSeen(location="query", name="q", count=3)],
        data_types=[DataTypeSeen(type="email", location="response_body", path="$.email", status_class="2xx", count=2)],
    )
    s2 = summary(
        requests=5,
        status_classes={"2xx": 5},
        auth_schemes={"none": 5},
        params=[ParamSeen(location="query", name="q", count=5)],
        data_types=[DataTypeSeen(type="email", location="response_body", path="$.email", status_class="2xx", count=4)],
    )
    await store.apply_batch(batch([s1]))
    await store.apply_batch(batch([s2]))
    now = datetime.now(UTC)
    (facts,) = (await store.list_endpoints(now)).items
    assert facts.requests == 8
    assert facts.requests_30d == 8
    assert facts.status_classes == {"2xx": 7, "4xx": 1}
    assert facts.auth_schemes == {"jwt": 2, "none": 6}
    assert [(d.type, d.count) for d in facts.data_types] == [("email", 6)]
    (param,) = await store.endpoint_params(facts.id)
    assert (param.location, param.name, param.count) == ("query", "q", 8)


async def test_same_endpoint_twice_in_one_batch(store: Store) -> None:
    # Two summaries of one endpoint in one batch (two windows) must not trip the upsert.
    early = summary(requests=2, at=NOW - timedelta(minutes=10))
    late = summary(requests=3, at=NOW - timedelta(minutes=2))
    assert await store.apply_batch(batch([early, late]))
    (facts,) = (await store.list_endpoints(datetime.now(UTC))).items
    assert facts.requests == 5
    assert facts.last_called == late.last_seen
    assert facts.first_seen == early.first_seen
    assert len(await store.endpoint_windows(facts.id)) == 2


async def test_timestamps_come_back_utc_aware(store: Store) -> None:
    await store.apply_batch(batch([summary()]))
    (facts,) = (await store.list_endpoints(datetime.now(UTC))).items
    assert facts.last_called is not None and facts.last_called.utcoffset() == timedelta(0)
    assert facts.last_called == summary().last_seen


async def test_sensor_keeps_latest_stats(store: Store) -> None:
    await store.apply_batch(batch(seq=2, stats=SensorStats(exchanges=20, dropped_batches=1, dropped_requests=30)))
    await store.apply_batch(batch(seq=1, stats=SensorStats(exchanges=10)))  # late, older report
    (sensor,) = await store.list_sensors()
    assert (sensor.batches, sensor.last_seq, sensor.exchanges) == (2, 2, 20)
    assert (sensor.dropped_batches, sensor.dropped_requests) == (1, 30)


async def test_alerts_group_by_type_endpoint_ip_principal(store: Store) -> None:
    await store.apply_batch(batch([], [alert(count=2), alert(ip="198.51.100.1"), alert(type_="SIG_XSS")]))
    await store.apply_batch(
        batch([], [alert(count=3, at=NOW), alert(principal="p-hash"), alert(at=NOW - timedelta(hours=2))])
    )
    alerts = (await store.list_alerts(limit=50)).items
    grouped = {(a.type, a.client_ip, a.principal): a for a in alerts}
    assert len(grouped) == 4
    main = grouped[("SIG_SQLI", "203.0.113.9", "")]
    assert main.count == 6
    assert main.last_seen == NOW
    assert main.first_seen == NOW - timedelta(hours=2, seconds=30)


async def test_resolved_alert_reopens_on_new_activity(store: Store) -> None:
    await store.apply_batch(batch([], [alert(at=NOW - timedelta(hours=1))]))
    (a,) = (await store.list_alerts()).items
    changed = await store.set_alert_status(a.id, "resolved", "admin-test", NOW - timedelta(minutes=30))
    assert changed is not None and (changed.status, changed.status_by) == ("resolved", "admin-test")
    await store.apply_batch(batch([], [alert(at=NOW)]))
    again = await store.get_alert(a.id)
    assert again is not None and again.status == "active"
    await store.set_alert_status(a.id, "dismissed", "admin-test", NOW)
    await store.apply_batch(batch([], [alert(at=NOW + timedelta(minutes=1))]))
    still = await store.get_alert(a.id)
    assert still is not None and still.status == "dismissed" and still.count == 3
    assert await store.set_alert_status("nope", "resolved", "x", NOW) is None


async def test_endpoint_paging_returns_every_item_once(store: Store) -> None:
    await store.apply_batch(batch([summary(path=f"/items/{i:02d}", api=f"api{i % 3}") for i in range(23)]))
    now, seen, cursor = datetime.now(UTC), [], None
    for _ in range(10):
        page = await store.list_endpoints(now, limit=5, cursor=cursor)
        seen += [e.id for e in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 23
    with pytest.raises(InvalidCursor):
        await store.list_endpoints(now, cursor="not-a-cursor")


async def test_alert_paging_returns_every_item_once(store: Store) -> None:
    alerts = [alert(path=f"/a/{i}", at=NOW - timedelta(minutes=i % 4)) for i in range(13)]
    await store.apply_batch(batch([], alerts))
    seen, cursor = [], None
    for _ in range(10):
        page = await store.list_alerts(AlertFilter(), limit=4, cursor=cursor)
        seen += [a.id for a in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 13


async def test_endpoint_filters(store: Store) -> None:
    old = NOW - timedelta(days=40)
    await store.apply_batch(
        batch([
            summary(path="/users/{id}", unauthenticated_success=1, auth_schemes={"none": 1}),
            summary(path="/orders", external_requests=2, last_external=NOW),
            summary(path="/legacy", at=old, method="POST"),
            summary(
                path="/cards",
                data_types=[DataTypeSeen(type="credit_card", location="response_body", status_class="2xx")],
            ),
            summary(path="/spec-only", requests=0, authenticated_success=0, status_classes={}, auth_schemes={}),
        ])
    )
    now = datetime.now(UTC)

    async def paths(**kw: object) -> set[str]:
        page = await store.list_endpoints(now, EndpointFilter(**kw), limit=100)  # type: ignore[arg-type]
        return {e.path for e in page.items}

    assert await paths(authentication="unauthenticated") == {"/users/{id}"}
    # The 30-day reset: /legacy was last called 40 days ago, so what it did then no longer counts.
    assert await paths(authentication="unknown") == {"/spec-only", "/legacy"}
    assert await paths(external=True) == {"/orders"}
    assert "/orders" not in await paths(external=False)
    assert await paths(status="inactive") == {"/legacy"}
    assert await paths(status="awaiting_data") == {"/spec-only"}
    assert await paths(method="post") == {"/legacy"}
    assert await paths(data_type="credit_card") == {"/cards"}
    assert await paths(q="ORD") == {"/orders"}
    assert await paths(q="%") == set()  # LIKE wildcards are escaped
    assert await paths(api="shop") == await paths()
    counts = await store.inventory_counts(now)
    assert counts == {
        "apis": 1, "endpoints": 5, "active": 3, "inactive": 1, "awaiting_data": 1,
        "unauthenticated": 1, "external": 1, "with_sensitive_data": 1,
    }


async def test_concurrent_batches_from_one_store(store: Store) -> None:
    batches = [batch([summary(path=f"/p{i % 4}", requests=1)]) for i in range(40)]
    results = await asyncio.gather(*(store.apply_batch(b) for b in batches))
    assert all(results)
    assert await _totals(store) == {f"GET /p{i}": 10 for i in range(4)}
