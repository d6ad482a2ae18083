"""Dashboard routes: login and sessions, the pages, the admin actions, security headers.

The pages sit beside the JSON API in the same app but authenticate differently: a browser logs in
once with a read or admin token and then carries a session cookie (see ``session.py``); the bearer
middleware does not apply to them (they are not in its role table). Every POST is checked three
ways: a session (except login), a per-session CSRF token in a hidden field, and the browser's own
``Sec-Fetch-Site`` header when it sends one. The cookie is ``SameSite=Strict`` besides.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from apiward.logs import get_logger
from collector import explorer
from collector.alerts import SEVERITIES, alert_view
from collector.fields import FIELDS
from collector.problems import ApiError
from collector.settings import Role
from collector.state import AUTH, RECOMMENDATIONS, store_of
from collector.store import AlertFilter, EndpointFilter, InvalidCursor
from collector.store.store import ALERT_STATUSES

from . import views
from .session import COOKIE, Session, SessionStore

log = get_logger("collector.dashboard")

HERE = Path(__file__).resolve().parent
SESSIONS = web.AppKey("dashboard_sessions", SessionStore)
JINJA = web.AppKey("dashboard_jinja", jinja2.Environment)
SESSION = web.RequestKey("dashboard_session", Session)
ROUTE_PREFIX = "dashboard."  # route names; tests/collector/test_openapi.py leaves these out of the API's contract
_FORM_MAX_BYTES = 16 * 1024

# 'self' only: no CDN, no inline script or style (the SVG charts use classes, the JS is a file).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- helpers -------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _fmt_time(value: str | datetime | None) -> str:
    """ISO UTC -> ``2024-05-01 12:00:03``; the column headers say UTC."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).isoformat()
    return value[:19].replace("T", " ")


def _url(path: str, query: Mapping[str, str], **changes: str | int | None) -> str:
    """``path`` with ``query`` updated by ``changes`` (None removes a key); empty values are dropped."""
    merged = {k: v for k, v in query.items() if v}
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return f"{path}?{urlencode(merged)}" if merged else path


def _safe_next(value: object) -> str:
    """Only a local path: ``//evil.example`` or ``https://...`` would make login an open redirect."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value[:2048]
    return "/"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every page; nothing here renders anything but HTML
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the tests, not silently blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _fmt_time
    env.globals.update(url=_url, severities=SEVERITIES)
    return env


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = request.get(SESSION)
    context.setdefault("nav", None)
    html = request.app[JINJA].get_template(template).render(
        request=request, session=session, query=request.query, path=request.path, **context
    )
    # Pages carry the inventory: keep them out of shared caches and the back-forward cache of others.
    return web.Response(text=html, status=status, content_type="text/html", headers={"Cache-Control": "no-store"})


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", status=status, status_code=status, message=message)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def _session(request: web.Request) -> Session | None:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None  # no database read for anonymous requests
    sessions, store = request.app[SESSIONS], store_of(request.app)
    session = await sessions.get(store, cookie)
    if session is not None and not request.app[AUTH].still_grants(session.token_ref, session.admin):
        await sessions.drop(store, cookie)  # its token was rotated or removed: the session ends with it
        log.info("dashboard_session_revoked", who=session.name)
        return None
    return session


def page(handler: PageHandler) -> PageHandler:
    """A page for a logged-in session; anyone else goes to the login page and comes back."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = await _session(request)
        if session is None:
            return _redirect(_url("/login", {}, next=request.path_qs))
        request[SESSION] = session
        return await handler(request)

    return wrapped


def _cross_site(request: web.Request) -> bool:
    # Browsers since 2020 send Sec-Fetch-Site; a form posted from another site says "cross-site".
    return request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")


async def _form(request: web.Request) -> MultiDictProxy[str | Any]:
    if request.content_length is not None and request.content_length > _FORM_MAX_BYTES:
        raise ApiError(413, "form is too large")
    return await request.post()


def _choice(query: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = query.get(name) or None
    if value is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}")
    return value


# --- login ---------------------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.StreamResponse:
    nxt = _safe_next(request.query.get("next"))
    if await _session(request) is not None:
        return _redirect(nxt)
    return render(request, "login.html", next=nxt, error=None)


async def login_submit(request: web.Request) -> web.StreamResponse:
    if _cross_site(request):
        return _error(request, 403, "Cross-site login attempts are refused.")
    form = await _form(request)
    nxt = _safe_next(form.get("next"))
    token = str(form.get("token") or "").strip()
    try:
        caller = request.app[AUTH].authenticate(f"Bearer {token}")
    except ApiError:
        log.info("dashboard_login_failed", remote=request.remote)
        return render(request, "login.html", status=401, next=nxt, error="That token is not valid.")
    if caller.role is not None and not caller.role.grants(Role.READ):
        return render(request, "login.html", status=403, next=nxt,
                      error="This token is for sensors (ingest role); log in with a read or admin token.")
    admin = caller.role is None or caller.role.grants(Role.ADMIN)
    sessions = request.app[SESSIONS]
    session_id, _ = await sessions.create(store_of(request.app), caller.name, admin, caller.ref)
    log.info("dashboard_login", who=caller.name, admin=admin)
    response = _redirect(nxt)
    response.set_cookie(
        COOKIE, session_id, path="/", httponly=True, samesite="Strict", secure=request.secure,
        max_age=int(sessions.absolute_seconds),
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    session = await _session(request)
    form = await _form(request)
    if session is not None:
        if not session.csrf_ok(str(form.get("csrf") or "")):
            return _error(request, 403, "The form expired; reload the page and try again.")
        await request.app[SESSIONS].drop(store_of(request.app), request.cookies.get(COOKIE))
    response = _redirect("/login")
    response.del_cookie(COOKIE, path="/")
    return response


# --- pages ---------------------------------------------------------------------------------------


@page
async def overview(request: web.Request) -> web.StreamResponse:
    data = await views.overview(store_of(request.app), _now())
    return render(request, "overview.html", nav="overview", **data)


def _endpoint_filter(query: Mapping[str, str], api: str | None) -> EndpointFilter:
    external = _choice(query, "external", ("true", "false"))
    q = (query.get("q") or "").strip() or None
    if q is not None and len(q) > 200:
        raise ValueError("search must be at most 200 characters")
    return EndpointFilter(
        api=api or (query.get("api") or None),
        status=_choice(query, "status", ("active", "inactive", "awaiting_data")),
        authentication=_choice(query, "authentication", ("authenticated", "unauthenticated", "unknown")),
        external=None if external is None else external == "true",
        data_type=(query.get("data_type") or None),
        q=q,
    )


async def _endpoints(request: web.Request, api: Any) -> web.StreamResponse:
    q = request.query
    try:
        filters = _endpoint_filter(q, api.id if api else None)
        sort = _choice(q, "sort", tuple(views.SORTS)) or "risk"
        direction = _choice(q, "dir", ("asc", "desc")) or ("desc" if sort in ("risk", "last_called") else "asc")
        page_no = int(q.get("page") or 1)
    except ValueError as exc:
        return _error(request, 400, str(exc))
    store, now = store_of(request.app), _now()
    table = await views.endpoint_table(store, now, filters, sort=sort, descending=direction == "desc", page=page_no)
    return render(
        request, "endpoints.html", nav="endpoints", api=api, table=table, sort=sort, direction=direction,
        sorts=views.SORTS, data_types=await views.data_types_seen(store),
        filtered=any(q.get(k) for k in ("api", "status", "authentication", "external", "data_type", "q")),
    )


@page
async def endpoints(request: web.Request) -> web.StreamResponse:
    return await _endpoints(request, None)


@page
async def api_collection(request: web.Request) -> web.StreamResponse:
    store = store_of(request.app)
    api = await store.get_api(request.match_info["id"], _now())
    if api is None:
        return _error(request, 404, "There is no such API collection.")
    return await _endpoints(request, api)


@page
async def endpoint(request: web.Request) -> web.StreamResponse:
    data = await views.endpoint_detail(
        store_of(request.app), request.app[RECOMMENDATIONS], request.match_info["id"], _now()
    )
    if data is None:
        return _error(request, 404, "There is no such endpoint.")
    return render(request, "endpoint.html", nav="endpoints", **data)


@page
async def alerts(request: web.Request) -> web.StreamResponse:
    q = request.query
    store = store_of(request.app)
    # On-call first wants what is still open; "all" is one click away.
    status_param = q.get("status") or "active"
    try:
        filters = AlertFilter(
            severity=_choice(q, "severity", SEVERITIES),
            type=(q.get("type") or None),
            status=_choice({"status": status_param}, "status", (*ALERT_STATUSES, "all")) if status_param != "all"
            else None,
            endpoint_id=(q.get("endpoint") or None),
        )
        page_ = await store.list_alerts(filters, views.PAGE_SIZE, q.get("cursor") or None)
    except (ValueError, InvalidCursor) as exc:
        return _error(request, 400, str(exc))
    return render(
        request, "alerts.html", nav="alerts", alerts=[alert_view(a) for a in page_.items],
        next_cursor=page_.next_cursor, current_status=status_param, types=await views.alert_types_seen(store),
        statuses=ALERT_STATUSES, notice=q.get("done"),
    )


async def alert_status(request: web.Request) -> web.StreamResponse:
    """Resolve / dismiss / reopen: admin sessions only, with the session's CSRF token."""
    session = await _session(request)
    if session is None:
        return _error(request, 403, "Log in first.")
    request[SESSION] = session
    if _cross_site(request):
        return _error(request, 403, "Cross-site requests are refused.")
    form = await _form(request)
    if not session.csrf_ok(str(form.get("csrf") or "")):
        return _error(request, 403, "The form expired or did not come from this dashboard; reload and try again.")
    if not session.admin:
        return _error(request, 403, "Changing an alert needs an admin token; this session has the read role.")
    status = str(form.get("status") or "")
    if status not in ALERT_STATUSES:
        return _error(request, 400, f"status must be one of {', '.join(ALERT_STATUSES)}")
    alert_id = request.match_info["id"]
    row = await store_of(request.app).set_alert_status(alert_id, status, session.name, _now())
    if row is None:
        return _error(request, 404, "There is no such alert.")
    log.info("alert_status_changed", alert_id=row.id, status=row.status, by=session.name, via="dashboard")
    back = _safe_next(form.get("next") or "/alerts")
    return _redirect(back)


@page
async def recommendations(request: web.Request) -> web.StreamResponse:
    items = await views.recommendations(store_of(request.app), request.app[RECOMMENDATIONS], _now())
    return render(request, "recommendations.html", nav="recommendations", items=items)


@page
async def explore(request: web.Request) -> web.StreamResponse:
    q = request.query
    template = explorer.TEMPLATES_BY_ID.get(q.get("template", ""))
    if q.get("template") and template is None:
        return _error(request, 404, "There is no such query template.")
    # Not stripped: the error position must point into the text exactly as the user typed it.
    text = template.filter if template else (q.get("filter") or "")
    result = None
    if text.strip():
        try:
            result = await views.explore(store_of(request.app), _now(), text, template, q.get("cursor") or None)
        except InvalidCursor as exc:
            return _error(request, 400, str(exc))
    return render(
        request, "explorer.html", nav="explorer", templates=explorer.TEMPLATES, fields=FIELDS, text=text,
        result=result,
        status=400 if result is not None and result.error else 200,
    )


@page
async def sensors(request: web.Request) -> web.StreamResponse:
    items = await views.sensors(store_of(request.app), _now())
    return render(request, "sensors.html", nav="sensors", sensors=items)


# --- wiring --------------------------------------------------------------------------------------


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    resource = request.match_info.route.resource
    if resource is not None and (resource.name or "").startswith(ROUTE_PREFIX):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)


PAGES: list[tuple[str, str, PageHandler, str]] = [
    ("GET", "/", overview, "overview"),
    ("GET", "/login", login_form, "login"),
    ("POST", "/login", login_submit, "login-submit"),
    ("POST", "/logout", logout, "logout"),
    ("GET", "/endpoints", endpoints, "endpoints"),
    ("GET", "/endpoints/{id}", endpoint, "endpoint"),
    ("GET", "/apis/{id}", api_collection, "api"),
    ("GET", "/alerts", alerts, "alerts"),
    ("POST", "/alerts/{id}/status", alert_status, "alert-status"),
    ("GET", "/recommendations", recommendations, "recommendations"),
    ("GET", "/explorer", explore, "explorer"),
    ("GET", "/sensors", sensors, "sensors"),
]


def setup(app: web.Application, sessions: SessionStore | None = None) -> None:
    """Add the dashboard to the collector app (before it starts)."""
    app[SESSIONS] = sessions or SessionStore()
    app[JINJA] = _environment()
    for method, path, handler, name in PAGES:
        app.router.add_route(method, path, handler, name=ROUTE_PREFIX + name)
    app.router.add_static("/static/", HERE / "static", name=ROUTE_PREFIX + "static", append_version=False)
    app.on_response_prepare.append(_security_headers)


__all__ = ["CSP", "PAGES", "ROUTE_PREFIX", "SECURITY_HEADERS", "SESSIONS", "setup"]
