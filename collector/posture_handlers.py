"""Routes for specs, findings, recommendations and the explorer."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from apiward.logs import get_logger
from collector import explorer, inventory, posture_jobs
from collector import recommendations as recs
from collector.handlers import _PAGING, Handler, _choice, _limit, _only, _page, _text
from collector.ingest import read_body
from collector.posture import FINDING_SEVERITIES, FINDING_STATUSES, FINDING_TYPES
from collector.problems import ApiError
from collector.settings import Role
from collector.specs import SpecError, parse_spec
from collector.state import RECOMMENDATIONS, SETTINGS, store_of
from collector.store import posture_store as ps
from collector.store.posture_store import FindingRow
from collector.timefmt import iso

log = get_logger("collector.posture")
_QUERY_MAX_BYTES = 16 * 1024
_THREAD_THRESHOLD = 256 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


# --- specs ---------------------------------------------------------------------------------------


async def post_spec(request: web.Request) -> web.Response:
    _only(request, ("api", "source"))
    settings = request.app[SETTINGS]
    api = _text(request, "api", 200)
    source = _text(request, "source", 2048) or "request body"
    body = await read_body(request, settings.max_spec_bytes, settings.max_spec_bytes)
    try:
        if len(body) > _THREAD_THRESHOLD:  # Stripe's spec takes a second or two to parse
            spec = await asyncio.to_thread(parse_spec, body, source, api)
        else:
            spec = parse_spec(body, source, api)
    except SpecError as exc:
        raise ApiError(
            422, str(exc), title="Invalid OpenAPI document",
            extra={"source": exc.source, "pointer": exc.pointer, "problem": exc.problem},
        ) from None
    store, now = store_of(request.app), _now()
    result = await ps.import_spec(store, spec, now)
    # Shadow and drift findings of this API change with its spec.
    await posture_jobs.refresh(store, await ps.endpoint_ids(store, result.api_id), now)
    log.info("spec_imported", api=result.api, operations=result.operations, source=source[:200])
    return web.json_response(
        {
            "api": result.api,
            "api_id": result.api_id,
            "title": spec.title,
            "spec_format": result.spec_format,
            "base_url": spec.base_url,
            "base_path": spec.base_path,
            "operations": result.operations,
            "new_endpoints": result.new_endpoints,
            "etag": result.etag,
        },
        status=201,
    )


async def get_spec_templates(request: web.Request) -> web.StreamResponse:
    _only(request, ("api",))
    items = await ps.spec_templates(store_of(request.app), _text(request, "api", 200))
    digest = hashlib.sha256(json.dumps([(i["api"], i["etag"]) for i in items]).encode()).hexdigest()[:32]
    etag = f'"{digest}"'
    if etag in [v.strip() for v in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers={"ETag": etag})
    body = {"items": [{**i, "imported_at": iso(i["imported_at"])} for i in items], "next_cursor": None}
    return web.json_response(body, headers={"ETag": etag, "Cache-Control": "no-cache"})


# --- findings and recommendations ------------------------------------------------------------------


def finding_view(f: FindingRow) -> dict[str, Any]:
    return {
        "id": f.id,
        "type": f.type,
        "title": FINDING_TYPES.get(f.type, f.type),
        "severity": f.severity,
        "status": f.status,
        "endpoint": {"id": f.endpoint_id, "api": f.api, "method": f.method, "path": f.path},
        "evidence": f.evidence,
        "first_seen": iso(f.first_seen),
        "last_seen": iso(f.last_seen),
        "resolved_at": iso(f.resolved_at),
    }


async def list_findings(request: web.Request) -> web.Response:
    _only(request, (*_PAGING, "type", "severity", "status", "endpoint", "api"))
    filters = ps.FindingFilter(
        type=_choice(request, "type", FINDING_TYPES),
        severity=_choice(request, "severity", FINDING_SEVERITIES),
        status=_choice(request, "status", FINDING_STATUSES),
        endpoint_id=_text(request, "endpoint", 64),
        api=_text(request, "api", 200),
    )
    page = await ps.list_findings(store_of(request.app), filters, _limit(request), request.query.get("cursor"))
    return _page([finding_view(f) for f in page.items], page.next_cursor)


async def list_recommendations(request: web.Request) -> web.Response:
    _only(request, ())
    store, loaded = store_of(request.app), request.app[RECOMMENDATIONS]
    found = await ps.open_findings_by_type(store, recs.finding_types_needed(loaded))
    counts = await store.inventory_counts(_now())
    return _page(recs.evaluate(loaded, found, counts["endpoints"]), None)


# --- explorer --------------------------------------------------------------------------------------


async def query_templates(request: web.Request) -> web.Response:
    _only(request, ())
    items = [{"id": t.id, "title": t.title, "description": t.description, "filter": t.filter}
             for t in explorer.TEMPLATES]
    fields = [{"name": name, "kind": f.kind, "description": f.doc, "choices": list(f.choices)}
              for name, f in explorer.F.FIELDS.items()]
    return web.json_response({"items": items, "next_cursor": None, "fields": fields})


async def post_query(request: web.Request) -> web.Response:
    _only(request, _PAGING)
    raw = await request.content.read(_QUERY_MAX_BYTES + 1)
    if len(raw) > _QUERY_MAX_BYTES:
        raise ApiError(413, f"body is over the {_QUERY_MAX_BYTES} byte limit")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or len(body) != 1 or not isinstance(next(iter(body.values())), str) \
            or next(iter(body)) not in ("template", "filter"):
        raise ApiError(400, 'body must be {"template": "ID"} or {"filter": "EXPRESSION"}')
    template: explorer.Template | None = None
    if "template" in body:
        template = explorer.TEMPLATES_BY_ID.get(body["template"])
        if template is None:
            raise ApiError(404, f"no query template {body['template'][:100]!r}")
        text = template.filter
    else:
        text = body["filter"]
    now = _now()
    try:
        condition = explorer.parse_filter(text, now)
    except explorer.QueryError as exc:
        raise ApiError(400, str(exc), title="Invalid filter", extra={"position": exc.position}) from None
    store = store_of(request.app)
    page = await store.list_endpoints(now, limit=_limit(request), cursor=request.query.get("cursor"), where=condition)
    return web.json_response({
        "template": template.id if template else None,
        "filter": text,
        "items": [inventory.endpoint_view(f, now) for f in page.items],
        "next_cursor": page.next_cursor,
    })


ROUTES: list[tuple[str, str, Handler, Role | tuple[Role, ...] | None]] = [
    ("POST", "/api/v1/specs", post_spec, Role.ADMIN),
    ("GET", "/api/v1/specs/templates", get_spec_templates, (Role.INGEST, Role.READ)),
    ("GET", "/api/v1/findings", list_findings, Role.READ),
    ("GET", "/api/v1/recommendations", list_recommendations, Role.READ),
    ("GET", "/api/v1/query/templates", query_templates, Role.READ),
    ("POST", "/api/v1/query", post_query, Role.READ),
]

__all__ = ["ROUTES", "finding_view"]
