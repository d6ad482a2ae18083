"""The collector's aiohttp application: factory, middlewares, lifecycle.

Middlewares, outermost first: ``observe`` (request id, metrics), ``errors`` (every error becomes a
problem document), ``authorize`` (bearer token and role for the matched route).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from apiward.logs import get_logger
from collector import dashboard, fleet_jobs, posture_handlers, posture_jobs, ratelimit
from collector import recommendations as recs
from collector.auth import Authenticator
from collector.export.service import export_context
from collector.handlers import ROUTES as CORE_ROUTES
from collector.handlers import Handler
from collector.metrics import CollectorMetrics
from collector.problems import ApiError, problem_response
from collector.settings import CollectorSettings, Role
from collector.state import AUTH, CALLER, METRICS, OPENAPI, RECOMMENDATIONS, SETTINGS, STORE, StoreSlot
from collector.store import InvalidCursor, Store

log = get_logger("collector.app")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
ROUTES: list[tuple[str, str, Handler, Role | tuple[Role, ...] | None]] = [*CORE_ROUTES, *posture_handlers.ROUTES]
_ROLES: dict[tuple[str, str], Role | tuple[Role, ...] | None] = {(m, p): role for m, p, _, role in ROUTES}


def _route_label(request: web.Request) -> str:
    # The route template, never the raw path: label cardinality stays bounded.
    route = request.match_info.route
    resource = route.resource
    if resource is None or request.match_info.http_exception is not None:
        return "unmatched"
    return resource.canonical


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-ID", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    metrics = request.app[METRICS]
    route, started, status = _route_label(request), time.perf_counter(), 500
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            method = request.method if request.method in _METHODS else "OTHER"
            metrics.http_requests.labels(route, method, str(status)).inc()
            metrics.http_seconds.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return problem_response(exc.status, exc.detail, title=exc.title, headers=exc.headers, extra=exc.extra)
    except InvalidCursor as exc:
        return problem_response(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")}
        detail = {
            404: f"no route for {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: "request body is too large",
        }.get(exc.status, exc.reason)
        return problem_response(exc.status, detail, headers=keep)
    except asyncio.CancelledError:
        raise
    except SQLAlchemyError as exc:
        # The database is away or refused the write: a retryable condition for sensors.
        log.error("database_error", error=type(exc).__name__, route=_route_label(request), exc_info=True)
        return problem_response(503, "the database is unavailable; retry later", headers={"Retry-After": "5"})
    except Exception:
        log.error("unhandled_error", route=_route_label(request), exc_info=True)
        return problem_response(500, "internal error; see the collector log")


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is None:
        resource = request.match_info.route.resource
        needed = _ROLES.get((request.method, resource.canonical)) if resource else None
        if needed is not None:
            auth = request.app[AUTH]
            caller = auth.authenticate(request.headers.get("Authorization"))
            auth.authorize(caller, needed)
            request[CALLER] = caller
    return await handler(request)


def _openapi_document() -> bytes:
    # Next to this module (shipped as package data, see pyproject's [tool.setuptools.package-data]).
    return Path(__file__).with_name("openapi.json").read_bytes()


def create_app(settings: CollectorSettings, store: Store | None = None) -> web.Application:
    """The collector app. With ``store`` the caller owns it; otherwise it is opened and closed here."""
    app = web.Application(
        middlewares=[observe, errors, ratelimit.middleware(), authorize],
        client_max_size=settings.max_body_bytes,
        # Ingest inflates gzip itself, bounded; aiohttp's automatic inflation would not be.
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[STORE] = StoreSlot(store)
    app[METRICS] = CollectorMetrics()
    app[AUTH] = Authenticator(settings.tokens, insecure_dev=settings.insecure_dev)
    app[OPENAPI] = _openapi_document()
    # A bad recommendations file stops start-up here, with its file and line.
    app[RECOMMENDATIONS] = recs.load(settings.recommendations_file or recs.DEFAULT_PATH)
    for method, path, handler, _ in ROUTES:
        app.router.add_route(method, path, handler)
    dashboard.setup(app)  # the HTML pages at / (session login, not bearer tokens; see collector/dashboard)

    async def store_lifecycle(app: web.Application) -> AsyncIterator[None]:
        slot = app[STORE]
        owned = slot.store is None
        if owned:
            slot.store = await Store.open(settings.database_url)
            log.info("store_opened", dialect=slot.store.dialect)
        try:
            yield
        finally:
            if owned and slot.store is not None:
                await slot.store.close()
                slot.store = None

    app.cleanup_ctx.append(store_lifecycle)
    # After the store: cleanup contexts start in order and stop in reverse.
    fleet = fleet_jobs.FleetConfig.load(settings.behaviour_policy_file)  # validated with the settings
    app.cleanup_ctx.append(
        posture_jobs.sweep_context(
            lambda: app[STORE].store, settings.sweep_seconds, settings.retention_days, fleet_horizon=fleet.horizon
        )
    )
    app.cleanup_ctx.append(export_context(settings))  # alert policy on the store, export dispatchers
    # After the export context: fleet alerts take the installed alert policy (suppression, routes).
    app.cleanup_ctx.append(fleet_jobs.fleet_context(lambda: app[STORE].store, settings.fleet_seconds, fleet))
    return app
