"""The HTTP API on a real socket: tokens and roles, ingest limits, paging, filters, alerts, metrics."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector.settings import Role
from collector.store import Store
from sensor.events import Batch, encode_batch
from tests.collector.conftest import bearer
from tests.collector.factories import DataTypeSeen, alert, batch, summary

Client = TestClient[Any, Any]
PROBLEM = "application/problem+json"


async def post_batch(api: Client, b: Batch, *, gzipped: bool = False, role: Role = Role.INGEST) -> Any:
    body = encode_batch(b)
    headers = {**bearer(role), "Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return await api.post("/api/v1/events", data=body, headers=headers)


async def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    doc: dict[str, Any] = await resp.json(content_type=PROBLEM)
    assert set(doc) == {"type", "title", "status", "detail"}
    assert doc["status"] == status
    return doc


async def get_json(client: Client, path: str, role: Role = Role.READ, **params: str) -> Any:
    resp = await client.get(path, headers=bearer(role), params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()


# --- tokens and roles ----------------------------------------------------------------------------


async def test_missing_and_unknown_tokens_are_401(api: Client) -> None:
    resp = await api.get("/api/v1/endpoints")
    await assert_problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    await assert_problem(await api.get("/api/v1/endpoints", headers={"Authorization": "Bearer nope-nope-nope"}), 401)
    await assert_problem(await api.get("/api/v1/endpoints", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401)
    await assert_problem(await api.post("/api/v1/events", data=b"{}"), 401)


async def test_roles(api: Client) -> None:
    # The ingest token cannot read; read cannot ingest or change alerts; admin reads too.
    await assert_problem(await api.get("/api/v1/endpoints", headers=bearer(Role.INGEST)), 403)
    await assert_problem(await post_batch(api, batch(), role=Role.READ), 403)
    await assert_problem(await post_batch(api, batch(), role=Role.ADMIN), 403)
    await assert_problem(
        await api.patch("/api/v1/alerts/x", json={"status": "resolved"}, headers=bearer(Role.READ)), 403
    )
    assert (await api.get("/api/v1/endpoints", headers=bearer(Role.READ))).status == 200
    assert (await api.get("/api/v1/endpoints", headers=bearer(Role.ADMIN))).status == 200
    for public in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await api.get(public)).status == 200, public


# --- ingest --------------------------------------------------------------------------------------


async def test_ingest_is_idempotent(api: Client, sqlite_store: Store) -> None:
    b = batch([summary(requests=4)])
    first = await post_batch(api, b)
    assert first.status == 200
    assert await first.json() == {"batch_id": b.batch_id, "duplicate": False}
    second = await post_batch(api, b, gzipped=True)
    assert await second.json() == {"batch_id": b.batch_id, "duplicate": True}
    page = await get_json(api, "/api/v1/endpoints")
    assert [e["requests_30d"] for e in page["items"]] == [4]
    assert await sqlite_store.batch_count() == 1


async def test_gzip_batch_is_accepted(api: Client) -> None:
    resp = await post_batch(api, batch([summary(path="/zipped")]), gzipped=True)
    assert resp.status == 200
    page = await get_json(api, "/api/v1/endpoints")
    assert [e["path"] for e in page["items"]] == ["/zipped"]


def _gzip_bomb(size: int) -> bytes:
    # Valid JSON prefix followed by a long run of spaces: tiny compressed, huge inflated.
    return gzip.compress(b'{"batch_id": "x"' + b" " * size + b"}", compresslevel=9)


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"not json", {}, 422),
        (b"{}", {}, 422),
        (b'{"batch_id": 1}', {}, 422),
        (json.dumps({"batch_id": "b", "sensor": {}, "created_at": "x", "seq": 1}).encode(), {}, 422),
        (b"\xff\xfe{}", {}, 422),
        (b"x" * (300 * 1024), {}, 413),  # over the 256 KiB wire cap of the test settings
        (_gzip_bomb(8 * 1024 * 1024), {"Content-Encoding": "gzip"}, 413),  # inflates past 1 MiB
        (b"not gzip", {"Content-Encoding": "gzip"}, 400),
        (gzip.compress(b"{}")[:-6], {"Content-Encoding": "gzip"}, 400),
        (b"{}", {"Content-Encoding": "br"}, 415),
    ],
)
async def test_bad_batches_are_refused_and_change_nothing(
    api: Client, sqlite_store: Store, body: bytes, headers: dict[str, str], status: int
) -> None:
    resp = await api.post("/api/v1/events", data=body, headers={**bearer(Role.INGEST), **headers})
    await assert_problem(resp, status)
    assert await sqlite_store.batch_count() == 0
    assert (await get_json(api, "/api/v1/inventory"))["counts"]["endpoints"] == 0


@pytest.mark.parametrize(
    "bad",
    [
        summary(path="/x" * 2000),  # longer than the column
        summary(requests=-1),
        summary(requests=2**60),
        summary(api=""),
        summary(method="GET /x"),
        summary(path="/nul\x00"),
        summary(status_classes={"2xx-very-long-class": 1}),
    ],
)
async def test_batches_beyond_column_limits_are_422(api: Client, sqlite_store: Store, bad: Any) -> None:
    doc = await assert_problem(await post_batch(api, batch([bad])), 422)
    assert doc["detail"].startswith("invalid batch:")
    assert await sqlite_store.batch_count() == 0


async def test_bad_alert_severity_is_422(api: Client) -> None:
    bad = alert(severity="catastrophic")
    await assert_problem(await post_batch(api, batch([], [bad])), 422)


async def test_not_found_and_wrong_method_are_problems(api: Client) -> None:
    await assert_problem(await api.get("/nowhere"), 404)
    await assert_problem(await api.get("/api/v1/endpoints/unknown", headers=bearer(Role.READ)), 404)
    await assert_problem(await api.get("/api/v1/apis/unknown", headers=bearer(Role.READ)), 404)
    resp = await api.delete("/api/v1/endpoints", headers=bearer(Role.READ))
    await assert_problem(resp, 405)
    assert "GET" in resp.headers["Allow"]


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"cursor": "garbage!"}, {"status": "sleepy"},
        {"external": "maybe"}, {"authentication": "both"}, {"unknown_filter": "1"}, {"method": "G E T"},
    ],
)
async def test_bad_query_parameters_are_400(api: Client, query: dict[str, str]) -> None:
    await assert_problem(await api.get("/api/v1/endpoints", headers=bearer(Role.READ), params=query), 400)


# --- reads ---------------------------------------------------------------------------------------


async def test_endpoint_paging_over_http(api: Client) -> None:
    await post_batch(api, batch([summary(path=f"/r/{i:03d}") for i in range(57)]))
    ids: list[str] = []
    params: dict[str, str] = {"limit": "10"}
    for _ in range(10):
        page = await get_json(api, "/api/v1/endpoints", **params)
        ids += [e["id"] for e in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert len(ids) == len(set(ids)) == 57
    assert len((await get_json(api, "/api/v1/endpoints"))["items"]) == 57  # default limit 100


async def test_endpoint_filters_over_http(api: Client) -> None:
    await post_batch(
        api,
        batch([
            summary(path="/open", unauthenticated_success=1),
            summary(path="/ext", external_requests=1, last_external=summary().last_seen),
            summary(path="/card", data_types=[DataTypeSeen(type="credit_card", location="request_body")]),
            summary(path="/other", api="billing", method="POST"),
        ]),
    )

    async def paths(**params: str) -> list[str]:
        return sorted(e["path"] for e in (await get_json(api, "/api/v1/endpoints", **params))["items"])

    assert await paths(authentication="unauthenticated") == ["/open"]
    assert await paths(external="true") == ["/ext"]
    assert await paths(external="false") == ["/card", "/open", "/other"]
    assert await paths(data_type="credit_card") == ["/card"]
    assert await paths(api="billing") == ["/other"]
    assert await paths(method="post") == ["/other"]
    assert await paths(q="op") == ["/open"]
    assert await paths(status="active", api="shop") == ["/card", "/ext", "/open"]

    apis = await get_json(api, "/api/v1/apis")
    by_name = {a["name"]: a for a in apis["items"]}
    assert by_name["shop"]["counts"]["endpoints"] == 3
    assert by_name["shop"]["counts"]["unauthenticated"] == 1
    one = await get_json(api, f"/api/v1/apis/{by_name['billing']['id']}")
    assert one["counts"]["endpoints"] == 1
    inv = await get_json(api, "/api/v1/inventory")
    assert inv["counts"]["apis"] == 2 and inv["counts"]["external"] == 1
    assert inv["counts"]["with_sensitive_data"] == 1


async def test_endpoint_detail(api: Client) -> None:
    await post_batch(api, batch([summary(path="/d")]))
    (item,) = (await get_json(api, "/api/v1/endpoints"))["items"]
    detail = await get_json(api, f"/api/v1/endpoints/{item['id']}")
    assert detail["totals"]["requests"] == 10
    assert detail["status_classes"] == {"2xx": 10}
    assert detail["windows"][0]["latency_ms"] == {"p50": 5.0, "p95": 20.0, "max": 40.0}
    assert {k: detail[k] for k in item} == item


async def test_sensors_show_data_loss(api: Client) -> None:
    from sensor.events import SensorStats

    await post_batch(api, batch(stats=SensorStats(exchanges=5, dropped_batches=2, dropped_requests=40)))
    inv = await get_json(api, "/api/v1/inventory")
    assert inv["dropped"] == {"dropped_batches": 2, "dropped_summaries": 0, "dropped_requests": 40}
    (sensor,) = inv["sensors"]
    assert sensor["last_batch_at"].endswith("Z")
    sensors = await get_json(api, "/api/v1/sensors")
    assert sensors["items"] == inv["sensors"] and sensors["next_cursor"] is None


# --- alerts --------------------------------------------------------------------------------------


async def test_alerts_grouping_filters_and_patch(api: Client) -> None:
    await post_batch(api, batch([], [alert(count=2), alert(ip="198.51.100.7", severity="low")]))
    await post_batch(api, batch([], [alert(count=3)]))
    page = await get_json(api, "/api/v1/alerts")
    assert sorted(a["count"] for a in page["items"]) == [1, 5]
    (main,) = (await get_json(api, "/api/v1/alerts", severity="high"))["items"]
    assert main["mitre_tactics"] == ["Initial access"] and main["status"] == "active"
    assert main["client"] == {"ip": "203.0.113.9", "principal": None}

    url = f"/api/v1/alerts/{main['id']}"
    await assert_problem(await api.patch(url, json={"status": "resolved"}, headers=bearer(Role.READ)), 403)
    await assert_problem(await api.patch(url, json={"status": "gone"}, headers=bearer(Role.ADMIN)), 422)
    await assert_problem(await api.patch(url, json={"status": "resolved", "x": 1}, headers=bearer(Role.ADMIN)), 422)
    await assert_problem(await api.patch(url, data=b"{nope", headers={**bearer(Role.ADMIN),
                                                                     "Content-Type": "application/json"}), 400)
    await assert_problem(await api.patch(url, data=b"status=resolved", headers=bearer(Role.ADMIN)), 415)
    await assert_problem(
        await api.patch("/api/v1/alerts/missing", json={"status": "resolved"}, headers=bearer(Role.ADMIN)), 404
    )
    resp = await api.patch(url, json={"status": "resolved"}, headers=bearer(Role.ADMIN))
    assert resp.status == 200
    changed = await resp.json()
    assert (changed["status"], changed["status_changed_by"]) == ("resolved", "admin-test")
    assert changed["status_changed_at"].endswith("Z")
    assert [a["id"] for a in (await get_json(api, "/api/v1/alerts", status="resolved"))["items"]] == [main["id"]]
    assert len((await get_json(api, "/api/v1/alerts", status="active"))["items"]) == 1


async def test_alert_paging_over_http(api: Client) -> None:
    await post_batch(api, batch([], [alert(path=f"/p/{i}") for i in range(11)]))
    ids: list[str] = []
    params = {"limit": "3"}
    for _ in range(10):
        page = await get_json(api, "/api/v1/alerts", **params)
        ids += [a["id"] for a in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert len(ids) == len(set(ids)) == 11


# --- operations ----------------------------------------------------------------------------------


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    return 0.0


async def test_metrics_move(api: Client) -> None:
    before = await (await api.get("/metrics")).text()
    assert _metric(before, "apiward_collector_batches_total", result="ingested") == 0
    b = batch([summary(), summary(path="/two")], [alert()])
    await post_batch(api, b)
    await post_batch(api, b)
    await api.post("/api/v1/events", data=b"junk", headers=bearer(Role.INGEST))
    await api.get("/api/v1/endpoints", headers=bearer(Role.READ))
    text = await (await api.get("/metrics")).text()
    assert _metric(text, "apiward_collector_batches_total", result="ingested") == 1
    assert _metric(text, "apiward_collector_batches_total", result="duplicate") == 1
    assert _metric(text, "apiward_collector_batches_total", result="rejected") == 1
    assert _metric(text, "apiward_collector_summaries_total") == 2
    assert _metric(text, "apiward_collector_alert_events_total") == 1
    assert _metric(
        text, "apiward_collector_http_requests_total", route="/api/v1/events", method="POST", status="200"
    ) == 2
    assert _metric(
        text, "apiward_collector_http_requests_total", route="/api/v1/endpoints", method="GET", status="200"
    ) == 1


async def test_request_id_is_echoed(api: Client) -> None:
    resp = await api.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = await api.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert resp.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_ingest_log_line_has_no_token(api: Client) -> None:
    import io

    import structlog

    from apiward.logs import configure_logging

    stream = io.StringIO()
    configure_logging("info", component="collector", stream=stream)
    try:
        b = batch()
        await post_batch(api, b)
    finally:
        structlog.reset_defaults()  # later tests must not write into this test's stream
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (line,) = [entry for entry in lines if entry.get("event") == "batch_ingested"]
    assert line["batch_id"] == b.batch_id and line["sensor_id"] == "sensor-1" and line["duplicate"] is False
    assert line["summaries"] == 1 and "request_id" in line
    assert "ingest-token" not in stream.getvalue()
