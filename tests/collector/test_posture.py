"""Spec import + traffic -> findings, risk, recommendations and explorer answers, end to end over HTTP,
on SQLite and PostgreSQL. Responses are checked against the collector's own OpenAPI document."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from collector import posture_jobs
from collector.app import create_app
from collector.settings import CollectorSettings, Role
from collector.specs import parse_spec
from collector.store import Store
from collector.store import posture_store as ps
from collector.store import schema as t
from sensor.events import encode_batch
from tests.collector.conftest import bearer
from tests.collector.factories import NOW, DataTypeSeen, ParamSeen, alert, batch, summary
from tests.collector.test_openapi import _check
from tests.collector.test_specs import PETSTORE3, SWAGGER2

Client = TestClient[Any, Any]
ADMIN, READ, INGEST = bearer(Role.ADMIN), bearer(Role.READ), bearer(Role.INGEST)


@pytest.fixture
async def app(aiohttp_client: Any, settings: CollectorSettings, store: Store) -> AsyncIterator[Client]:
    settings.max_body_bytes = 8 * 1024 * 1024
    settings.max_decompressed_bytes = 8 * 1024 * 1024
    client: Client = await aiohttp_client(create_app(settings, store))
    yield client


@pytest.fixture
async def doc(app: Client) -> dict[str, Any]:
    return dict(await (await app.get("/openapi.json")).json())


def _shop_traffic() -> list[Any]:
    external = {"external_requests": 3, "last_external": NOW - timedelta(minutes=4)}
    return [
        # Declared, authenticated, but drifting: an undeclared query parameter and a key in the query.
        summary(api="shop", path="/api/orders", name="listOrders", from_spec=True, params=[
            ParamSeen(location="query", name="page"), ParamSeen(location="query", name="debug"),
            ParamSeen(location="query", name="api_key"),
        ]),
        # Deprecated but called (zombie); the spec demands a key, yet anonymous calls succeed.
        summary(api="shop", path="/api/orders/{id}", method="DELETE", unauthenticated_success=2,
                authenticated_success=0, auth_schemes={"none": 2}, requests=2),
        # Not in the spec (shadow), open, internet-facing, over plaintext, carrying card numbers.
        summary(api="shop", path="/api/admin/export", unauthenticated_success=5, authenticated_success=0,
                auth_schemes={"none": 5}, requests=5, plaintext_requests=5, **external, data_types=[
                    DataTypeSeen(type="credit_card", location="response_body", path="$.cards[*]", status_class="2xx"),
                    DataTypeSeen(type="us_ssn", location="query", path="ssn"),
                ]),
    ]


async def _ingest(app: Client, summaries: list[Any], alerts: list[Any] | None = None) -> None:
    resp = await app.post("/api/v1/events", data=encode_batch(batch(summaries, alerts)),
                          headers={**INGEST, "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()


async def _findings(app: Client, **params: str) -> dict[tuple[str, str], dict[str, Any]]:
    resp = await app.get("/api/v1/findings", headers=READ, params={"limit": "500", **params})
    assert resp.status == 200
    return {(f["type"], f["endpoint"]["path"]): f for f in (await resp.json())["items"]}


async def _query(app: Client, body: dict[str, str]) -> Any:
    return await app.post("/api/v1/query", headers=READ, json=body)


async def test_end_to_end(app: Client, doc: dict[str, Any], store: Store) -> None:
    resp = await app.post("/api/v1/specs", params={"api": "shop", "source": "legacy.json"},
                          data=json.dumps(SWAGGER2), headers=ADMIN)
    imported = await _check(app, doc, resp, "/api/v1/specs", "post")
    assert resp.status == 201 and (imported["operations"], imported["api"]) == (5, "shop")

    resp = await app.get("/api/v1/endpoints", headers=READ, params={"api": "shop"})
    before = {e["path"] + " " + e["method"]: e for e in (await resp.json())["items"]}
    assert before["/api/orders GET"]["name"] == "listOrders"
    assert {e["status"] for e in before.values()} == {"awaiting_data"}

    await _ingest(app, _shop_traffic(), [alert("SIG_SQLI", path="/api/admin/export", severity="high")])
    # The alert factory files under api "shop", method GET.
    found = await _findings(app, status="open")
    assert set(found) == {
        ("undocumented_parameters", "/api/orders"),
        ("credentials_in_query", "/api/orders"),
        ("zombie_endpoint", "/api/orders/{id}"),
        ("unauthenticated_endpoint", "/api/orders/{id}"),
        ("auth_not_enforced", "/api/orders/{id}"),
        ("shadow_endpoint", "/api/admin/export"),
        ("unauthenticated_endpoint", "/api/admin/export"),
        ("external_exposure", "/api/admin/export"),
        ("sensitive_data_exposed", "/api/admin/export"),
        ("sensitive_data_in_url", "/api/admin/export"),
        ("plaintext_http", "/api/admin/export"),
    }
    assert found[("undocumented_parameters", "/api/orders")]["evidence"]["parameters"] == [
        {"location": "query", "name": "api_key"}, {"location": "query", "name": "debug"}
    ]
    assert found[("credentials_in_query", "/api/orders")]["evidence"]["parameters"] == ["api_key"]
    assert found[("shadow_endpoint", "/api/admin/export")]["severity"] == "high"
    exposed = found[("sensitive_data_exposed", "/api/admin/export")]["evidence"]
    assert exposed["data_types"] == [
        {"type": "credit_card", "location": "response_body"}, {"type": "us_ssn", "location": "query"}
    ]
    page = await _check(app, doc, await app.get("/api/v1/findings", headers=READ), "/api/v1/findings", "get")
    assert [f["severity"] for f in page["items"]] == sorted(
        (f["severity"] for f in page["items"]), key=["high", "medium", "low", "informational"].index
    )
    # Paging walks every finding once.
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        body = await (await app.get("/api/v1/findings", headers=READ, params=params)).json()
        seen += [f["id"] for f in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(f["id"] for f in found.values())

    # Risk and counts on the endpoint view.
    resp = await app.get("/api/v1/endpoints", headers=READ, params={"api": "shop"})
    views = {e["path"] + " " + e["method"]: e for e in (await resp.json())["items"]}
    export = views["/api/admin/export GET"]
    assert export["shadow"] and export["findings_count"] == 6 and export["alerts_count"] == 1
    assert export["risk"]["score"] == 100
    assert {f["factor"] for f in export["risk"]["factors"]} == {
        "external_traffic", "unauthenticated", "sensitive_data_high", "plaintext_traffic", "active_alerts",
        "shadow_endpoint",
    }
    assert views["/api/orders/{id} DELETE"]["deprecated"]
    assert views["/api/orders/{id} GET"]["status"] == "awaiting_data"
    assert views["/api/orders GET"]["risk"] == {"score": 0, "factors": []}

    # Per-API risk: the worst endpoint, and how many endpoints carry each factor.
    apis = await _check(app, doc, await app.get("/api/v1/apis", headers=READ), "/api/v1/apis", "get")
    (shop,) = [a for a in apis["items"] if a["name"] == "shop"]
    assert shop["risk"]["score"] == 100
    assert {f["factor"]: f["endpoints"] for f in shop["risk"]["factors"]} == {
        "external_traffic": 1, "unauthenticated": 2, "sensitive_data": 1, "plaintext_traffic": 1,
        "active_alerts": 1, "shadow_endpoint": 1,
    }

    # Recommendations.
    recs = await _check(app, doc, await app.get("/api/v1/recommendations", headers=READ),
                        "/api/v1/recommendations", "get")
    status = {r["id"]: r["status"] for r in recs["items"]}
    assert status == {
        "endpoints-should-be-authenticated": "unhealthy",
        "unused-endpoints-should-be-removed": "healthy",
        "encrypted-protocols-only": "unhealthy",
        "exposed-sensitive-data-reviewed": "unhealthy",
        "shadow-endpoints-documented": "unhealthy",
        "keys-not-in-query-strings": "unhealthy",
        "weak-tokens-replaced": "healthy",
    }
    by_id = {r["id"]: r for r in recs["items"]}
    assert [e["path"] for e in by_id["exposed-sensitive-data-reviewed"]["affected_endpoints"]] == ["/api/admin/export"]
    assert {e["path"] for e in by_id["shadow-endpoints-documented"]["affected_endpoints"]} == {
        "/api/admin/export", "/api/orders", "/api/orders/{id}"
    }

    # Explorer: each built-in template.
    resp = await app.get("/api/v1/query/templates", headers=READ)
    tpl = await _check(app, doc, resp, "/api/v1/query/templates", "get")
    assert len(tpl["items"]) == 5
    expected = {
        "internet-exposed-sensitive-data": {"/api/admin/export"},
        "unencrypted-apis-unauthenticated-endpoints": {"/api/admin/export", "/api/orders/{id}"},
        "internet-exposed-unauthenticated-sensitive": {"/api/admin/export"},
        "shadow-endpoints-external": {"/api/admin/export"},
        "endpoints-with-high-alerts": {"/api/admin/export"},
    }
    for template_id, paths in expected.items():
        resp = await _query(app, {"template": template_id})
        body = await _check(app, doc, resp, "/api/v1/query", "post")
        assert {e["path"] for e in body["items"]} == paths, template_id
    resp = await _query(app, {"filter": 'deprecated and method = "delete"'})
    assert [e["path"] for e in (await resp.json())["items"]] == ["/api/orders/{id}"]
    resp = await _query(app, {"filter": "risk >= 100 and findings > 5"})
    assert [e["path"] for e in (await resp.json())["items"]] == ["/api/admin/export"]
    text = 'external and authentication = "unauthenticated" and data_type in ("credit_card", "iban")'
    resp = await _query(app, {"filter": text})
    assert [e["path"] for e in (await resp.json())["items"]] == ["/api/admin/export"]
    resp = await _query(app, {"filter": 'external and authentication = = "x"'})
    problem = await _check(app, doc, resp, "/api/v1/query", "post")
    assert resp.status == 400 and problem["position"] == 30
    resp = await _query(app, {"template": "nope"})
    await _check(app, doc, resp, "/api/v1/query", "post")
    assert resp.status == 404

    # Conditions end -> findings resolve. The spec learns the export endpoint: no longer a shadow.
    fixed = json.loads(json.dumps(SWAGGER2))
    fixed["paths"]["/admin/export"] = {"get": {"operationId": "exportCards"}}
    resp = await app.post("/api/v1/specs", params={"api": "shop"}, data=json.dumps(fixed), headers=ADMIN)
    assert resp.status == 201
    resolved = await _findings(app, status="resolved")
    assert set(resolved) == {("shadow_endpoint", "/api/admin/export")}
    assert resolved[("shadow_endpoint", "/api/admin/export")]["resolved_at"]

    # 31 days later: traffic facts reset, everything about traffic resolves, inactivity opens.
    later = datetime.now(UTC) + timedelta(days=31)
    await posture_jobs.sweep(store, retention_days=14, now=later)
    open_now = await _findings(app, status="open")
    assert {k[0] for k in open_now} == {"inactive_30d"}
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(t.endpoints.c.unauthenticated_success, t.endpoints.c.last_external)
                                  .where(t.endpoints.c.path == "/api/admin/export"))).one()
        windows = await conn.scalar(sa.select(sa.func.count()).select_from(t.endpoint_windows))
        hourly = await conn.scalar(sa.select(sa.func.sum(t.endpoint_hourly.c.requests)))
        types = await conn.scalar(sa.select(sa.func.count()).select_from(t.endpoint_data_types))
    assert tuple(row) == (0, None) and types == 0
    assert windows == 0 and hourly == 17  # windows compacted into hourly rows, requests kept


async def test_failed_import_changes_nothing(app: Client, doc: dict[str, Any], store: Store) -> None:
    resp = await app.post("/api/v1/specs", params={"api": "pets"}, data=PETSTORE3.read_bytes(), headers=ADMIN)
    assert resp.status == 201

    async def snapshot() -> list[Any]:
        async with store.engine.connect() as conn:
            return [
                sorted(map(tuple, (await conn.execute(sa.select(table))).all()), key=repr)
                for table in (t.apis, t.endpoints, t.specs, t.endpoint_spec)
            ]

    before = await snapshot()
    broken = json.loads(json.dumps(SWAGGER2))
    broken["paths"]["/orders"]["get"]["parameters"] = [{"$ref": "#/parameters/missing"}]
    resp = await app.post("/api/v1/specs", params={"api": "pets", "source": "broken.json"},
                          data=json.dumps(broken), headers=ADMIN)
    problem = await _check(app, doc, resp, "/api/v1/specs", "post")
    assert resp.status == 422
    assert problem["pointer"] == "/paths/~1orders/get/parameters/0/$ref" and problem["source"] == "broken.json"
    assert "does not resolve" in problem["detail"]
    assert await snapshot() == before
    # A failure inside the database transaction (after the API and spec rows were written) rolls
    # back too: two copies of one operation break the endpoint_spec primary key.
    spec = parse_spec(json.dumps(SWAGGER2).encode(), "dup.json", "fresh-api")
    doubled = dataclasses.replace(spec, operations=[spec.operations[0], spec.operations[0]])
    with pytest.raises(sa.exc.DBAPIError):
        await ps.import_spec(store, doubled, datetime.now(UTC))
    assert await snapshot() == before


async def test_roles_and_templates_etag(app: Client, doc: dict[str, Any]) -> None:
    resp = await app.post("/api/v1/specs", data=PETSTORE3.read_bytes(), headers=READ)
    assert resp.status == 403
    resp = await app.post("/api/v1/specs", data=PETSTORE3.read_bytes(), headers=ADMIN)
    assert resp.status == 201
    resp = await app.get("/api/v1/specs/templates", headers=INGEST)
    body = await _check(app, doc, resp, "/api/v1/specs/templates", "get")
    etag = resp.headers["ETag"]
    assert body["items"][0]["api"] == "petstore3.swagger.io" and len(body["items"][0]["operations"]) == 19
    resp = await app.get("/api/v1/specs/templates", headers={**READ, "If-None-Match": etag})
    assert resp.status == 304
    resp = await app.get("/api/v1/findings", headers=INGEST)
    assert resp.status == 403


@pytest.mark.parametrize(
    "text",
    [
        "name = \"x'; DROP TABLE endpoints; --\"",
        'path contains "%" or path contains "_"',
        "api = 'a\\' OR 1=1 --'",
    ],
)
async def test_injection_attempts_stay_data(app: Client, store: Store, text: str) -> None:
    await _ingest(app, [summary(path="/a")])
    resp = await _query(app, {"filter": text})
    assert resp.status == 200
    assert (await resp.json())["items"] == []
    async with store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.endpoints)) == 1


async def test_time_based_inactive_opens_on_sweep(store: Store) -> None:
    await store.apply_batch(batch([summary(path="/old", at=NOW - timedelta(days=40))]))
    await posture_jobs.sweep(store, retention_days=14)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(t.findings.c.type, t.findings.c.status))).all()
    assert [tuple(r) for r in rows] == [("inactive_30d", "open")]
