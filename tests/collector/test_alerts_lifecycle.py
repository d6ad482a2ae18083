"""Alert lifecycle in the store: grouping window, suppression, history and export events (both backends)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from collector.settings import Role
from collector.store import Store
from collector.store import schema as t
from collector.store.alert_store import AlertPolicy, alert_history, record_recommendation
from collector.suppressions import AlertKey
from sensor.events import encode_batch
from tests.collector.conftest import bearer
from tests.collector.factories import NOW, alert, batch


def _policy(**changes: Any) -> AlertPolicy:
    values: dict[str, Any] = {"routes": lambda kind, type_, severity: ["siem"]}
    values.update(changes)
    return AlertPolicy(**values)


async def _outbox(store: Store) -> list[tuple[str, str, str]]:
    o = t.outbox.c
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(o.event, o.subject_id, o.exporter).order_by(o.id))
        return [(r[0], r[1], r[2]) for r in rows]


async def test_a_quiet_period_longer_than_the_window_opens_a_new_alert(store: Store) -> None:
    store.alert_policy = _policy(group_window=timedelta(hours=1))
    await store.apply_batch(batch([], [alert(at=NOW - timedelta(days=2))]))
    await store.apply_batch(batch([], [alert(at=NOW - timedelta(days=2) + timedelta(minutes=50))]))  # within
    await store.apply_batch(batch([], [alert(at=NOW)]))  # two days later: a new alert of the same group
    first, second = sorted((await store.list_alerts()).items, key=lambda a: a.first_seen)
    assert (first.count, second.count) == (2, 1)
    assert first.id != second.id
    # Late data that overlaps the first alert's activity joins it, not the newest one.
    await store.apply_batch(batch([], [alert(at=NOW - timedelta(days=2) + timedelta(minutes=10))]))
    again = await store.get_alert(first.id)
    assert again is not None and again.count == 3
    events = await _outbox(store)
    assert [(e, s) for e, s, _ in events] == [
        ("alert.created", first.id), ("alert.updated", first.id), ("alert.created", second.id),
    ]  # 1 -> 2 crosses a power of two; 2 -> 3 does not


async def test_updates_are_exported_when_the_count_doubles_or_severity_changes(store: Store) -> None:
    store.alert_policy = _policy()
    for i in range(9):
        await store.apply_batch(batch([], [alert(at=NOW - timedelta(minutes=30 - i))]))
    await store.apply_batch(batch([], [alert(at=NOW, severity="medium")]))
    events = [e for e, _, _ in await _outbox(store)]
    # counts 1 (created), 2, 4, 8 (doubled), 10 with a severity change
    assert events == ["alert.created", "alert.updated", "alert.updated", "alert.updated", "alert.updated"]


async def test_suppressed_alerts_are_stored_but_never_exported(store: Store) -> None:
    def suppress(key: AlertKey, now: Any) -> str | None:
        return "lab-scanner" if key.client_ip.startswith("10.") else None

    store.alert_policy = _policy(suppress=suppress)
    await store.apply_batch(batch([], [alert(ip="10.1.2.3"), alert(ip="203.0.113.5")]))
    await store.apply_batch(batch([], [alert(ip="10.1.2.3", count=5, at=NOW)]))
    by_ip = {a.client_ip: a for a in (await store.list_alerts()).items}
    assert by_ip["10.1.2.3"].status == "suppressed" and by_ip["10.1.2.3"].count == 6
    assert by_ip["203.0.113.5"].status == "active"
    assert [s for _, s, _ in await _outbox(store)] == [by_ip["203.0.113.5"].id]
    history = await alert_history(store, by_ip["10.1.2.3"].id)
    assert [(h.by, h.to_status, h.note) for h in history] == [
        ("apiward", "suppressed", "suppressed by rule lab-scanner")
    ]


async def test_status_changes_record_who_and_when_and_are_exported(store: Store) -> None:
    store.alert_policy = _policy()
    await store.apply_batch(batch([], [alert(at=NOW - timedelta(hours=1))]))
    (a,) = (await store.list_alerts()).items
    await store.set_alert_status(a.id, "resolved", "admin-alice", NOW - timedelta(minutes=30))
    await store.set_alert_status(a.id, "resolved", "admin-alice", NOW - timedelta(minutes=29))  # no change
    await store.apply_batch(batch([], [alert(at=NOW)]))  # new activity re-opens it
    await store.set_alert_status(a.id, "dismissed", "admin-bob", NOW)
    await store.apply_batch(batch([], [alert(at=NOW + timedelta(minutes=1), count=10)]))  # dismissed: silent
    history = [(h.by, h.from_status, h.to_status) for h in await alert_history(store, a.id)]
    assert history == [
        ("apiward", None, "active"),
        ("admin-alice", "active", "resolved"),
        ("apiward", "resolved", "active"),
        ("admin-bob", "active", "dismissed"),
    ]
    assert [e for e, _, _ in await _outbox(store)] == [
        "alert.created", "alert.status_changed", "alert.reopened", "alert.status_changed",
    ]


async def test_a_recommendation_that_becomes_unhealthy_is_exported_once(store: Store) -> None:
    def payload(status: str) -> dict[str, Any]:
        return {"id": "authenticate-endpoints", "status": status, "severity": "high"}

    routes = _policy().routes
    results = [
        await record_recommendation(store, payload(s), routes, NOW)
        for s in ("unhealthy", "unhealthy", "healthy", "unhealthy", "not_applicable")
    ]
    assert results == [1, 0, 0, 1, 0]


async def test_api_history_and_suppressed_filter(api: TestClient[Any, Any]) -> None:
    headers = {**bearer(Role.INGEST), "Content-Type": "application/json"}
    resp = await api.post("/api/v1/events", data=encode_batch(batch([], [alert()])), headers=headers)
    assert resp.status == 200
    (item,) = (await (await api.get("/api/v1/alerts", headers=bearer(Role.READ))).json())["items"]
    resp = await api.patch(f"/api/v1/alerts/{item['id']}", json={"status": "resolved"}, headers=bearer(Role.ADMIN))
    assert resp.status == 200
    detail = await (await api.get(f"/api/v1/alerts/{item['id']}", headers=bearer(Role.READ))).json()
    assert [(h["by"], h["from_status"], h["to_status"]) for h in detail["history"]] == [
        ("apiward", None, "active"), ("admin-test", "active", "resolved"),
    ]
    assert detail["remediation_steps"] and detail["mitre_tactic_ids"] == ["TA0001"] and detail["owasp"]
    resp = await api.get("/api/v1/alerts", params={"status": "suppressed"}, headers=bearer(Role.READ))
    assert resp.status == 200 and (await resp.json())["items"] == []
    resp = await api.patch(f"/api/v1/alerts/{item['id']}", json={"status": "suppressed"}, headers=bearer(Role.ADMIN))
    assert resp.status == 422  # suppression is for rules; an admin dismisses
    resp = await api.get("/api/v1/alerts/nope", headers=bearer(Role.READ))
    assert resp.status == 404
