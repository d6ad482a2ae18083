"""Real responses of every route validate against the schemas in ``/openapi.json``."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient

from collector.settings import Role
from sensor.events import SensorStats, encode_batch
from tests.collector.conftest import bearer
from tests.collector.factories import DataTypeSeen, ParamSeen, alert, batch, summary

Client = TestClient[Any, Any]


def _validate(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; refs point into the document's components.
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": doc["components"], **schema}
    jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker()).validate(instance)


def _response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> tuple[str, dict[str, Any]]:
    response = doc["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    ((content_type, media),) = response["content"].items()
    return content_type, media["schema"]


async def _check(api: Client, doc: dict[str, Any], resp: Any, path: str, method: str) -> Any:
    content_type, schema = _response_schema(doc, path, method, resp.status)
    assert resp.content_type == content_type, (path, resp.status)
    body = await resp.text() if content_type == "text/plain" else await resp.json(content_type=content_type)
    _validate(doc, schema, body)
    return body


@pytest.fixture
async def doc(api: Client) -> dict[str, Any]:
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    document: dict[str, Any] = await resp.json()
    assert document["openapi"] == "3.1.0"
    return document


async def test_every_route_is_documented(api: Client, doc: dict[str, Any]) -> None:
    # The dashboard's HTML pages (route names "dashboard.*") are not part of the JSON API's contract.
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in api.app.router.routes()  # type: ignore[union-attr]
        if route.resource is not None and route.method != "HEAD"
        and not (route.resource.name or "").startswith("dashboard.")
    }
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented


async def test_real_responses_match_the_schemas(api: Client, doc: dict[str, Any]) -> None:
    b = batch(
        [
            summary(
                path="/users/{id}",
                unauthenticated_success=1,
                auth_schemes={"jwt": 9, "none": 1},
                external_requests=1,
                last_external=summary().last_seen,
                params=[ParamSeen(location="path", name="id"), ParamSeen(location="query", name="fields")],
                data_types=[
                    DataTypeSeen(type="email", location="response_body", path="$.email", status_class="2xx"),
                    DataTypeSeen(type="us_ssn", location="query", path="ssn"),
                ],
                jwt_facts={"jwt": 9, "alg_none": 1, "unsigned": 1, "unsigned_accepted": 1},
            ),
            summary(path="/idle", requests=0, authenticated_success=0, status_classes={}, auth_schemes={}),
        ],
        [alert(), alert(type_="API_SpikeInAPITraffic", severity="medium", principal="p-1")],
        stats=SensorStats(exchanges=11, dropped_batches=1),
    )
    # The request body we send is the wire contract; the document describes it too.
    _validate(doc, {"$ref": "#/components/schemas/Batch"}, __import__("json").loads(encode_batch(b)))
    ingest_headers = {**bearer(Role.INGEST), "Content-Type": "application/json"}
    resp = await api.post("/api/v1/events", data=encode_batch(b), headers=ingest_headers)
    assert (await _check(api, doc, resp, "/api/v1/events", "post"))["duplicate"] is False
    resp = await api.post("/api/v1/events", data=b"{}", headers=ingest_headers)
    await _check(api, doc, resp, "/api/v1/events", "post")  # 422 problem

    read = bearer(Role.READ)
    endpoints = await _check(api, doc, await api.get("/api/v1/endpoints", headers=read), "/api/v1/endpoints", "get")
    apis = await _check(api, doc, await api.get("/api/v1/apis", headers=read), "/api/v1/apis", "get")
    alerts = await _check(api, doc, await api.get("/api/v1/alerts", headers=read), "/api/v1/alerts", "get")
    assert endpoints["items"] and apis["items"] and alerts["items"]
    assert {e["path"]: e["token_facts"] for e in endpoints["items"]}["/users/{id}"]["alg_none"] == 1
    with pytest.raises(jsonschema.ValidationError):  # the schemas are strict: drift fails loudly
        _validate(doc, {"$ref": "#/components/schemas/Endpoint"}, {**endpoints["items"][0], "surprise": 1})
    ids = {
        "/api/v1/endpoints/{id}": endpoints["items"][0]["id"],
        "/api/v1/apis/{id}": apis["items"][0]["id"],
        "/api/v1/alerts/{id}": alerts["items"][0]["id"],
    }
    checked = 0
    for path, ops in doc["paths"].items():
        if "get" not in ops:
            continue
        url = path.replace("{id}", ids.get(path, "x"))
        headers = read if ops["get"]["security"] else {}
        resp = await api.get(url, headers=headers)
        assert resp.status == 200, (path, await resp.text())
        await _check(api, doc, resp, path, "get")
        checked += 1
        if ops["get"]["security"]:  # the documented 401 problem, too
            await _check(api, doc, await api.get(url), path, "get")
    assert checked == 16  # every GET route, the posture ones (findings, recommendations, ...) included

    for path in ("/api/v1/endpoints/{id}", "/api/v1/apis/{id}"):
        resp = await api.get(path.replace("{id}", "missing"), headers=read)
        await _check(api, doc, resp, path, "get")  # 404 problem
    resp = await api.get("/api/v1/endpoints", headers=read, params={"limit": "0"})
    await _check(api, doc, resp, "/api/v1/endpoints", "get")  # 400 problem
    resp = await api.get("/api/v1/endpoints", headers=bearer(Role.INGEST))
    await _check(api, doc, resp, "/api/v1/endpoints", "get")  # 403 problem

    alert_id = alerts["items"][0]["id"]
    admin = bearer(Role.ADMIN)
    resp = await api.patch(f"/api/v1/alerts/{alert_id}", json={"status": "dismissed"}, headers=admin)
    patched = await _check(api, doc, resp, "/api/v1/alerts/{id}", "patch")
    assert patched["status"] == "dismissed"
    _validate(doc, {"$ref": "#/components/schemas/AlertPatch"}, {"status": "dismissed"})
    resp = await api.patch(f"/api/v1/alerts/{alert_id}", json={"status": "?"}, headers=admin)
    await _check(api, doc, resp, "/api/v1/alerts/{id}", "patch")  # 422 problem
