"""Route handlers: parse and check the request, ask the store, shape the answer."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from apiward.logs import get_logger
from collector import inventory, posture_jobs
from collector.alerts import SEVERITIES, alert_view
from collector.ingest import parse_batch_async, read_body
from collector.problems import ApiError
from collector.settings import Role
from collector.state import CALLER, METRICS, OPENAPI, SETTINGS, store_of
from collector.store import AlertFilter, EndpointFilter
from collector.store.alert_store import alert_history
from collector.store.posture_store import api_risk
from collector.store.store import ALERT_LIST_STATUSES, ALERT_STATUSES
from collector.timefmt import iso

log = get_logger("collector.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
_PATCH_MAX_BYTES = 16 * 1024
_PAGING = ("limit", "cursor")


# --- query helpers -------------------------------------------------------------------------------


def _only(request: web.Request, allowed: Iterable[str]) -> None:
    """Unknown query parameters are an error: a typo in a filter must not silently match everything."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}")


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer between 1 and {MAX_LIMIT}")
    return int(raw)


def _choice(request: web.Request, name: str, choices: Iterable[str]) -> str | None:
    value = request.query.get(name)
    allowed = tuple(choices)
    if value is not None and value not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)}")
    return value


def _text(request: web.Request, name: str, limit: int = 2048) -> str | None:
    value = request.query.get(name)
    if value is not None and (len(value) > limit or "\x00" in value):
        raise ApiError(400, f"{name} must be at most {limit} characters without NUL")
    return value


def _page(items: list[dict[str, Any]], next_cursor: str | None) -> web.Response:
    return web.json_response({"items": items, "next_cursor": next_cursor})


def _now() -> datetime:
    return datetime.now(UTC)


# --- ingest --------------------------------------------------------------------------------------


async def post_events(request: web.Request) -> web.Response:
    settings, metrics = request.app[SETTINGS], request.app[METRICS]
    try:
        body = await read_body(request, settings.max_body_bytes, settings.max_decompressed_bytes)
        batch = await parse_batch_async(body)
    except ApiError as exc:
        metrics.batches.labels("rejected").inc()
        log.warning("batch_rejected", status=exc.status, reason=exc.detail[:300])
        raise
    store = store_of(request.app)
    applied = await store.apply_batch(batch)
    if applied:
        try:
            await posture_jobs.refresh(store, posture_jobs.touched_endpoints(batch))
        except SQLAlchemyError:
            # The batch is stored; the periodic sweep re-evaluates these endpoints later.
            log.warning("posture_refresh_failed", batch_id=batch.batch_id, exc_info=True)
        metrics.batches.labels("ingested").inc()
        metrics.summaries.inc(len(batch.summaries))
        metrics.alerts.inc(len(batch.alerts))
    else:
        metrics.batches.labels("duplicate").inc()
    log.info(
        "batch_ingested",
        sensor_id=batch.sensor.id,
        batch_id=batch.batch_id,
        seq=batch.seq,
        summaries=len(batch.summaries),
        alerts=len(batch.alerts),
        duplicate=not applied,
    )
    return web.json_response({"batch_id": batch.batch_id, "duplicate": not applied})


# --- inventory -----------------------------------------------------------------------------------


async def get_inventory(request: web.Request) -> web.Response:
    _only(request, ())
    store, now = store_of(request.app), _now()
    counts = await store.inventory_counts(now)
    sensors = await store.list_sensors()
    return web.json_response(inventory.inventory_view(counts, sensors, now))


async def list_apis(request: web.Request) -> web.Response:
    _only(request, _PAGING)
    store, now = store_of(request.app), _now()
    page = await store.list_apis(now, _limit(request), request.query.get("cursor"))
    risks = await api_risk(store, [a.id for a in page.items], now)
    return _page([inventory.api_view(a, risks.get(a.id)) for a in page.items], page.next_cursor)


async def get_api(request: web.Request) -> web.Response:
    _only(request, ())
    store, now = store_of(request.app), _now()
    row = await store.get_api(request.match_info["id"], now)
    if row is None:
        raise ApiError(404, f"no API with id {request.match_info['id']!r}")
    risks = await api_risk(store, [row.id], now)
    return web.json_response(inventory.api_view(row, risks.get(row.id)))


_METHOD = re.compile(r"[A-Za-z]{1,16}")


def _endpoint_filter(request: web.Request) -> EndpointFilter:
    external = _choice(request, "external", ("true", "false"))
    method = _text(request, "method", 16)
    if method is not None and not _METHOD.fullmatch(method):
        raise ApiError(400, "method must be an HTTP method such as GET")
    return EndpointFilter(
        api=_text(request, "api", 200),
        method=method,
        status=_choice(request, "status", ("active", "inactive", "awaiting_data")),
        authentication=_choice(request, "authentication", ("authenticated", "unauthenticated", "unknown")),
        external=None if external is None else external == "true",
        data_type=_text(request, "data_type", 64),
        q=_text(request, "q", 2048),
    )


async def list_endpoints(request: web.Request) -> web.Response:
    _only(request, (*_PAGING, "api", "method", "status", "authentication", "external", "data_type", "q"))
    filters, now = _endpoint_filter(request), _now()
    page = await store_of(request.app).list_endpoints(now, filters, _limit(request), request.query.get("cursor"))
    return _page([inventory.endpoint_view(f, now) for f in page.items], page.next_cursor)


async def get_endpoint(request: web.Request) -> web.Response:
    _only(request, ())
    store, now, eid = store_of(request.app), _now(), request.match_info["id"]
    facts = await store.get_endpoint(eid, now)
    if facts is None:
        raise ApiError(404, f"no endpoint with id {eid!r}")
    view = inventory.endpoint_view(facts, now)
    view["status_classes"] = dict(sorted(facts.status_classes.items()))
    view["totals"] = {
        "requests": facts.requests,
        "unauthenticated_success": facts.unauthenticated_success,
        "authenticated_success": facts.authenticated_success,
        "unauthenticated_rejected": facts.unauthenticated_rejected,
        "plaintext_requests": facts.plaintext_requests,
        "external_requests": facts.external_requests,
    }
    view["params"] = [
        {"location": p.location, "name": p.name, "count": p.count,
         "first_seen": iso(p.first_seen), "last_seen": iso(p.last_seen)}
        for p in await store.endpoint_params(eid)
    ]
    view["windows"] = [
        {
            "sensor_id": w.sensor_id,
            "window_start": iso(w.window_start),
            "window_end": iso(w.window_end),
            "requests": w.requests,
            "latency_ms": {"p50": w.latency_p50, "p95": w.latency_p95, "max": w.latency_max},
            "request_size": {"p50": w.request_size_p50, "p95": w.request_size_p95, "max": w.request_size_max},
            "response_size": {
                "p50": w.response_size_p50, "p95": w.response_size_p95, "max": w.response_size_max
            },
        }
        for w in await store.endpoint_windows(eid)
    ]
    return web.json_response(view)


async def list_sensors(request: web.Request) -> web.Response:
    _only(request, ())
    sensors = await store_of(request.app).list_sensors()
    return _page([inventory.sensor_view(s) for s in sensors], None)


# --- alerts --------------------------------------------------------------------------------------


async def list_alerts(request: web.Request) -> web.Response:
    _only(request, (*_PAGING, "type", "severity", "status", "endpoint"))
    filters = AlertFilter(
        type=_text(request, "type", 100),
        severity=_choice(request, "severity", SEVERITIES),
        status=_choice(request, "status", ALERT_LIST_STATUSES),
        endpoint_id=_text(request, "endpoint", 64),
    )
    page = await store_of(request.app).list_alerts(filters, _limit(request), request.query.get("cursor"))
    return _page([alert_view(a) for a in page.items], page.next_cursor)


async def get_alert(request: web.Request) -> web.Response:
    """One alert with its status history (who changed it, when, from what to what)."""
    _only(request, ())
    store, alert_id = store_of(request.app), request.match_info["id"]
    row = await store.get_alert(alert_id)
    if row is None:
        raise ApiError(404, f"no alert with id {alert_id!r}")
    view = alert_view(row)
    view["history"] = [
        {"at": iso(h.at), "by": h.by, "from_status": h.from_status, "to_status": h.to_status, "note": h.note}
        for h in await alert_history(store, alert_id)
    ]
    return web.json_response(view)


async def patch_alert(request: web.Request) -> web.Response:
    _only(request, ())
    if request.content_type not in ("application/json", "application/merge-patch+json"):
        raise ApiError(415, "send the change as application/json")
    raw = await request.content.read(_PATCH_MAX_BYTES + 1)
    if len(raw) > _PATCH_MAX_BYTES:
        raise ApiError(413, f"body is over the {_PATCH_MAX_BYTES} byte limit")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or set(body) != {"status"} or body["status"] not in ALERT_STATUSES:
        raise ApiError(422, f'body must be {{"status": "{" | ".join(ALERT_STATUSES)}"}}')
    caller = request[CALLER]
    row = await store_of(request.app).set_alert_status(request.match_info["id"], body["status"], caller.name, _now())
    if row is None:
        raise ApiError(404, f"no alert with id {request.match_info['id']!r}")
    log.info("alert_status_changed", alert_id=row.id, status=row.status, by=caller.name)
    return web.json_response(alert_view(row))


# --- operations ----------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await store_of(request.app).ping()
    except ApiError:
        raise
    except Exception as exc:
        log.warning("readiness_failed", error=type(exc).__name__)
        raise ApiError(503, "the database does not answer") from exc
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


# (method, path, handler, role needed; None = public)
ROUTES: list[tuple[str, str, Handler, Role | None]] = [
    ("POST", "/api/v1/events", post_events, Role.INGEST),
    ("GET", "/api/v1/inventory", get_inventory, Role.READ),
    ("GET", "/api/v1/apis", list_apis, Role.READ),
    ("GET", "/api/v1/apis/{id}", get_api, Role.READ),
    ("GET", "/api/v1/endpoints", list_endpoints, Role.READ),
    ("GET", "/api/v1/endpoints/{id}", get_endpoint, Role.READ),
    ("GET", "/api/v1/sensors", list_sensors, Role.READ),
    ("GET", "/api/v1/alerts", list_alerts, Role.READ),
    ("GET", "/api/v1/alerts/{id}", get_alert, Role.READ),
    ("PATCH", "/api/v1/alerts/{id}", patch_alert, Role.ADMIN),
    ("GET", "/healthz", healthz, None),
    ("GET", "/readyz", readyz, None),
    ("GET", "/metrics", metrics, None),
    ("GET", "/openapi.json", openapi, None),
]

__all__ = ["ROUTES", "Handler"]
