"""Token facts from the wire to the store, the endpoint view, the ``weak_tokens`` finding and the
"Weak tokens should be replaced" recommendation, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from collector import posture_jobs
from collector.app import create_app
from collector.settings import CollectorSettings, Role
from collector.store import Store
from collector.store import schema as t
from collector.store.ids import endpoint_id
from collector.store.migrations import LATEST_VERSION, current_version
from collector.store.rows import JWT_FACTS
from sensor.events import encode_batch
from sensor.summary import JWT_FACTS as SENSOR_JWT_FACTS
from tests.collector.conftest import bearer
from tests.collector.factories import NOW, batch, summary
from tests.collector.test_openapi import _check

Client = TestClient[Any, Any]
READ, INGEST = bearer(Role.READ), bearer(Role.INGEST)


def test_collector_and_sensor_agree_on_the_fact_names() -> None:
    assert set(SENSOR_JWT_FACTS) == JWT_FACTS


# --- store ---------------------------------------------------------------------------------------


async def _jwt_rows(store: Store) -> dict[tuple[str, str], tuple[int, datetime, datetime]]:
    j = t.endpoint_jwt.c
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(j.endpoint_id, j.fact, j.count, j.first_seen, j.last_seen))).all()
    return {(r[0], r[1]): (int(r[2]), r[3], r[4]) for r in rows}


async def test_token_facts_add_up_exactly_once(store: Store) -> None:
    early, late = NOW - timedelta(hours=2), NOW - timedelta(minutes=5)
    b1 = batch([
        summary(at=early, jwt_facts={"jwt": 4, "alg_none": 1, "unsigned": 1, "future_fact": 7}),
        # the same endpoint twice in one batch: one row per fact, summed
        summary(at=late, jwt_facts={"jwt": 2, "no_exp": 2}),
        summary(path="/plain", jwt_facts={}),
    ])
    assert await store.apply_batch(b1) is True
    assert await store.apply_batch(b1) is False  # idempotent
    await store.apply_batch(batch([summary(at=late, jwt_facts={"jwt": 3, "alg_none": 3, "unsigned": 3,
                                                                 "unsigned_accepted": 0})]))

    eid = endpoint_id("shop", "GET", "/users/{id}")
    rows = await _jwt_rows(store)
    # unknown facts (a newer sensor's) and zero counts are not stored
    assert {fact: n for (_, fact), (n, _, _) in rows.items()} == {"jwt": 9, "alg_none": 4, "unsigned": 4, "no_exp": 2}
    assert {e for e, _ in rows} == {eid}
    _, first, last = rows[(eid, "alg_none")]
    assert first == early - timedelta(seconds=59) and last == late
    assert first.tzinfo is not None

    facts = await store.get_endpoint(eid, datetime.now(UTC))
    assert facts is not None
    assert facts.jwt_facts == {"alg_none": 4, "jwt": 9, "no_exp": 2, "unsigned": 4}
    plain = await store.get_endpoint(endpoint_id("shop", "GET", "/plain"), datetime.now(UTC))
    assert plain is not None and plain.jwt_facts == {}


async def test_token_facts_age_out_after_30_days(store: Store) -> None:
    await store.apply_batch(batch([
        summary(at=NOW - timedelta(days=40), jwt_facts={"jwt": 5, "alg_none": 5, "unsigned": 5}),
        summary(at=NOW - timedelta(days=1), jwt_facts={"jwt": 1, "no_exp": 1}),
    ]))
    eid = endpoint_id("shop", "GET", "/users/{id}")
    facts = await store.get_endpoint(eid, datetime.now(UTC))
    assert facts is not None
    # alg_none was last seen 40 days ago: reads ignore it; jwt was seen yesterday (count since first seen)
    assert facts.jwt_facts == {"jwt": 6, "no_exp": 1}
    await posture_jobs.sweep(store, retention_days=14)
    assert {fact for _, fact in await _jwt_rows(store)} == {"jwt", "no_exp"}  # the reset deleted the rest


async def test_a_version_3_database_migrates_to_token_facts(db_url: str) -> None:
    old = await Store.open(db_url)
    try:
        await old.apply_batch(batch([summary()]))
        async with old.engine.begin() as conn:  # back to what a version-3 collector left behind
            await conn.run_sync(t.endpoint_jwt.drop)
            await conn.execute(t.schema_version.delete().where(t.schema_version.c.version >= 4))
            assert await current_version(conn) == 3
    finally:
        await old.close()
    store = await Store.open(db_url)
    try:
        async with store.engine.connect() as conn:
            assert await current_version(conn) == LATEST_VERSION >= 4
        assert await store.apply_batch(batch([summary(jwt_facts={"jwt": 1, "symmetric": 1})]))
        assert {fact for _, fact in await _jwt_rows(store)} == {"jwt", "symmetric"}
        facts = await store.get_endpoint(endpoint_id("shop", "GET", "/users/{id}"), datetime.now(UTC))
        assert facts is not None and facts.requests == 20 and facts.jwt_facts == {"jwt": 1, "symmetric": 1}
    finally:
        await store.close()


# --- over HTTP: view, finding, recommendation ------------------------------------------------------


@pytest.fixture
async def app(aiohttp_client: Any, settings: CollectorSettings, store: Store) -> AsyncIterator[Client]:
    client: Client = await aiohttp_client(create_app(settings, store))
    yield client


@pytest.fixture
async def doc(app: Client) -> dict[str, Any]:
    return dict(await (await app.get("/openapi.json")).json())


async def _ingest(app: Client, summaries: list[Any]) -> None:
    resp = await app.post("/api/v1/events", data=encode_batch(batch(summaries)),
                          headers={**INGEST, "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()


async def _weak(app: Client, doc: dict[str, Any], status: str = "open") -> dict[str, dict[str, Any]]:
    resp = await app.get("/api/v1/findings", headers=READ, params={"type": "weak_tokens",
                                                                                  "status": status})
    page = await _check(app, doc, resp, "/api/v1/findings", "get")
    return {f["endpoint"]["path"]: f for f in page["items"]}


async def _recommendation(app: Client, doc: dict[str, Any]) -> dict[str, Any]:
    resp = await app.get("/api/v1/recommendations", headers=READ)
    page = await _check(app, doc, resp, "/api/v1/recommendations", "get")
    (rec,) = [r for r in page["items"] if r["id"] == "weak-tokens-replaced"]
    return dict(rec)


EXTERNAL: dict[str, Any] = {"external_requests": 2, "last_external": NOW - timedelta(minutes=4)}


async def test_weak_tokens_finding_and_recommendation(app: Client, doc: dict[str, Any], store: Store) -> None:
    await _ingest(app, [summary(path="/good", jwt_facts={"jwt": 10})])
    rec = await _recommendation(app, doc)
    assert (rec["status"], rec["finding_types"], rec["affected_endpoints"]) == ("healthy", ["weak_tokens"], [])
    assert rec["not_applicable_reason"] is None

    await _ingest(app, [
        # alg none, and the backend said 200 to some of them: high
        summary(path="/none", jwt_facts={"jwt": 6, "alg_none": 4, "unsigned": 5, "unsigned_accepted": 2}),
        # alg none, always refused: still weak tokens in circulation, medium
        summary(path="/none-refused", jwt_facts={"jwt": 3, "alg_none": 3, "unsigned": 3}),
        # no exp and long lifetimes: medium
        summary(path="/lifetime", jwt_facts={"jwt": 8, "no_exp": 3, "long_lifetime": 5, "expired": 1}),
        # symmetric: only on an internet-facing endpoint
        summary(path="/hs-internal", jwt_facts={"jwt": 4, "symmetric": 4}),
        summary(path="/hs-external", jwt_facts={"jwt": 4, "symmetric": 4}, **EXTERNAL),
        summary(path="/expired-only", jwt_facts={"jwt": 2, "expired": 2}),
    ])
    found = await _weak(app, doc)
    assert set(found) == {"/none", "/none-refused", "/lifetime", "/hs-external"}
    assert found["/none"]["severity"] == "high"
    assert found["/none"]["title"].startswith("Weak tokens")
    assert found["/none"]["evidence"] == {
        "facts": {"unsigned": 5, "alg_none": 4}, "jwt_requests": 6, "unsigned_accepted": 2, "external": False
    }
    assert found["/none-refused"]["severity"] == "medium"
    assert found["/lifetime"]["severity"] == "medium"
    assert found["/lifetime"]["evidence"]["facts"] == {"no_exp": 3, "long_lifetime": 5}
    assert found["/hs-external"]["severity"] == "medium"
    assert found["/hs-external"]["evidence"] == {
        "facts": {"symmetric": 4}, "jwt_requests": 4, "unsigned_accepted": 0, "external": True
    }

    resp = await app.get("/api/v1/endpoints", headers=READ, params={"limit": "50"})
    views = {e["path"]: e for e in (await _check(app, doc, resp, "/api/v1/endpoints", "get"))["items"]}
    assert views["/none"]["token_facts"] == {"alg_none": 4, "jwt": 6, "unsigned": 5, "unsigned_accepted": 2}
    assert views["/good"]["token_facts"] == {"jwt": 10}
    assert views["/none"]["findings_count"] == 1
    detail = await _check(app, doc, await app.get(f"/api/v1/endpoints/{views['/lifetime']['id']}",
                                                  headers=READ), "/api/v1/endpoints/{id}", "get")
    assert detail["token_facts"]["long_lifetime"] == 5

    rec = await _recommendation(app, doc)
    assert rec["status"] == "unhealthy"
    assert [e["path"] for e in rec["affected_endpoints"]] == ["/hs-external", "/lifetime", "/none", "/none-refused"]
    (none,) = [e for e in rec["affected_endpoints"] if e["path"] == "/none"]
    assert [(f["type"], f["severity"]) for f in none["findings"]] == [("weak_tokens", "high")]

    # The facts age out like the others: 31 days on, with fresh traffic that carries no weak token,
    # the endpoints are still active but their findings resolve.
    later = datetime.now(UTC) + timedelta(days=31)
    fresh = later - timedelta(minutes=5)
    await store.apply_batch(batch([
        summary(path=p, at=fresh, jwt_facts={"jwt": 1}) for p in ("/none", "/none-refused", "/lifetime")
    ] + [summary(path="/hs-external", at=fresh, jwt_facts={"jwt": 1, "symmetric": 1}, external_requests=1,
                 last_external=fresh)]))
    await posture_jobs.sweep(store, retention_days=14, now=later)
    resolved = await _weak(app, doc, status="resolved")
    assert set(resolved) == {"/none", "/none-refused", "/lifetime"}
    assert all(f["resolved_at"] for f in resolved.values())
    # a symmetric token from the internet seen again: that one stays open
    assert set(await _weak(app, doc)) == {"/hs-external"}
    facts = await store.get_endpoint(views["/none"]["id"], later)
    assert facts is not None and facts.jwt_facts == {"jwt": 7}  # "jwt" was seen again: its count goes on
    rec = await _recommendation(app, doc)
    assert [e["path"] for e in rec["affected_endpoints"]] == ["/hs-external"]
