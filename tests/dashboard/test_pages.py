"""The dashboard without a browser: sessions, login, CSRF, roles, headers, escaping, charts, and the
endpoints table's SQL (sorting, filters, paging) on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector import inventory
from collector.dashboard import svg, views
from collector.dashboard.routes import CSP
from collector.dashboard.session import SessionStore
from collector.settings import CollectorSettings, Role, Token
from collector.store import EndpointFilter, Store
from tests.collector.factories import NOW, DataTypeSeen, alert, batch, summary
from tests.dashboard.conftest import ADMIN_TOKEN, READ_TOKEN, TOKENS

Client = TestClient[Any, Any]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _login(api: Client, token: str) -> str:
    """Log in; returns the page's CSRF token."""
    resp = await api.post("/login", data={"token": token, "next": "/alerts"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/alerts"
    page = await (await api.get("/alerts")).text()
    match = CSRF.search(page)
    assert match
    return match.group(1)


async def _seed(store: Store) -> None:
    await store.apply_batch(batch(
        [
            summary(path="/users/{id}"),
            summary(path="/pay", method="POST", unauthenticated_success=2, external_requests=2,
                    last_external=NOW - timedelta(minutes=5),
                    data_types=[DataTypeSeen(type="credit_card", location="request_body", path="$.card")]),
            summary(path="/x/<script>alert(1)</script>"),
        ],
        [alert(), alert(type_="API_SpikeInAPITraffic", severity="medium", path="/pay")],
    ))


# --- sessions ------------------------------------------------------------------------------------


async def test_sessions_are_bounded_and_expire(store: Store) -> None:
    now = [1000.0]
    sessions = SessionStore(max_sessions=2, idle_seconds=10, absolute_seconds=25, touch_seconds=0,
                            clock=lambda: now[0])
    a, _ = await sessions.create(store, "a", admin=False, token_ref="r")
    now[0] += 0.1
    b, _ = await sessions.create(store, "b", admin=True, token_ref="r")
    now[0] += 0.1
    assert await sessions.get(store, a) is not None  # a is now the most recently used
    now[0] += 0.1
    c, _ = await sessions.create(store, "c", admin=False, token_ref="r")
    assert await sessions.count(store) == 2 and await sessions.get(store, b) is None  # least recently used went
    now[0] = 1009
    assert await sessions.get(store, a) is not None
    now[0] = 1020
    assert await sessions.get(store, c) is None  # created at ~1000, idle for 20 s
    assert await sessions.get(store, a) is None  # last seen at 1009: idle for 11 s
    assert await sessions.count(store) == 0  # expired sessions are deleted, not only refused


async def test_idle_and_absolute_expiry(store: Store) -> None:
    now = [1000.0]
    sessions = SessionStore(idle_seconds=10, absolute_seconds=25, touch_seconds=2, clock=lambda: now[0])
    sid, session = await sessions.create(store, "a", admin=True, token_ref="r")
    for t in (1008, 1016, 1024):
        now[0] = t
        got = await sessions.get(store, sid)  # kept alive by use
        assert got is not None and (got.name, got.admin, got.csrf) == ("a", True, session.csrf)
    now[0] = 1026
    assert await sessions.get(store, sid) is None  # absolute lifetime over, however active
    assert await sessions.get(store, "x" * 200) is None and await sessions.get(store, None) is None
    sid, _ = await sessions.create(store, "b", admin=False, token_ref="r")
    now[0] = 1037
    assert await sessions.get(store, sid) is None  # idle for 11 s
    assert await sessions.get(store, "") is None and await sessions.get(store, "x" * 500) is None
    sid, session = await sessions.create(store, "c", admin=False, token_ref="r")
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("") and not session.csrf_ok("nope")
    await sessions.drop(store, sid)
    assert await sessions.get(store, sid) is None


async def test_a_login_holds_on_every_replica_and_survives_a_restart(db_url: str, settings: Any,
                                                                     aiohttp_client: Any) -> None:
    """Two collectors on one database (replicas behind a load balancer without sticky sessions): the
    session cookie from a login on one is accepted by the other, and by a collector started after
    both stopped; logging out on one ends it on all."""
    from collector.app import create_app

    stores = [await Store.open(db_url), await Store.open(db_url)]
    try:
        one, two = [await aiohttp_client(create_app(settings, s)) for s in stores]
        csrf = await _login(one, READ_TOKEN)
        cookie = one.session.cookie_jar.filter_cookies(one.make_url("/"))["apiward_session"].value
        two.session.cookie_jar.update_cookies({"apiward_session": cookie})
        resp = await two.get("/alerts", allow_redirects=False)
        assert resp.status == 200 and CSRF.search(await resp.text()).group(1) == csrf  # type: ignore[union-attr]
        raw = b"".join(str(row).encode() for row in await _all_sessions(stores[0]))
        assert cookie.encode() not in raw  # the table holds digests, no usable cookie
        await one.close()
        await two.close()
        for s in stores:
            await s.close()
        stores = [await Store.open(db_url)]
        three = await aiohttp_client(create_app(settings, stores[0]))
        three.session.cookie_jar.update_cookies({"apiward_session": cookie})
        assert (await three.get("/alerts", allow_redirects=False)).status == 200  # a restart logs nobody out
        # Rotating the read token ends the sessions it opened, on every replica (here: a fourth one).
        new_read = "rotated-read-token-0123"
        rotated = CollectorSettings(tokens=[t if t.role != Role.READ else Token(Role.READ, new_read, t.name)
                                            for t in settings.tokens]).validate()
        stores.append(await Store.open(db_url))
        four = await aiohttp_client(create_app(rotated, stores[-1]))
        four.session.cookie_jar.update_cookies({"apiward_session": cookie})
        resp = await four.get("/alerts", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login")
        assert await _all_sessions(stores[0]) == []  # and the row is gone
        csrf = await _login(three, READ_TOKEN)  # the old token still works where it is configured
        cookie = three.session.cookie_jar.filter_cookies(three.make_url("/"))["apiward_session"].value
        resp = await three.post("/logout", data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 303
        three.session.cookie_jar.update_cookies({"apiward_session": cookie})
        resp = await three.get("/alerts", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    finally:
        for s in stores:
            await s.close()


def test_a_session_holds_only_while_its_token_grants_it() -> None:
    from collector.auth import Authenticator, token_ref

    read, admin = Token(Role.READ, READ_TOKEN, "r"), Token(Role.ADMIN, ADMIN_TOKEN, "a")
    auth = Authenticator([read, admin])
    assert auth.still_grants(token_ref(read), admin=False) and auth.still_grants(token_ref(admin), admin=True)
    assert not auth.still_grants(token_ref(read), admin=True)  # an admin session needs an admin token
    demoted = Authenticator([read, Token(Role.READ, ADMIN_TOKEN, "a")])  # same secret, now read only
    assert not demoted.still_grants(token_ref(admin), admin=True)
    assert not auth.still_grants(token_ref(Token(Role.INGEST, "ingest-token-0123456789", "i")), admin=False)
    assert not auth.still_grants("insecure-dev", admin=True)
    assert Authenticator([], insecure_dev=True).still_grants("insecure-dev", admin=True)


async def _all_sessions(store: Store) -> list[Any]:
    import sqlalchemy as sa

    from collector.store import schema as t

    async with store.engine.connect() as conn:
        return list((await conn.execute(sa.select(t.dashboard_sessions))).all())


# --- login, roles, CSRF, headers -----------------------------------------------------------------


async def test_pages_redirect_to_login(api: Client) -> None:
    for path in ("/", "/endpoints", "/alerts?status=all", "/sensors", "/explorer", "/recommendations"):
        resp = await api.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"].startswith("/login?next=%2F")
    resp = await api.get("/login")
    assert resp.status == 200
    assert resp.headers["Content-Security-Policy"] == CSP
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "same-origin"


async def test_login_checks_the_token_and_sets_a_safe_cookie(api: Client) -> None:
    bad = await api.post("/login", data={"token": "wrong-token-0123456789"}, allow_redirects=False)
    assert bad.status == 401 and "not valid" in await bad.text()
    ingest = await api.post("/login", data={"token": TOKENS[Role.INGEST]}, allow_redirects=False)
    assert ingest.status == 403
    empty = await api.post("/login", data={}, allow_redirects=False)
    assert empty.status == 401
    resp = await api.post("/login", data={"token": READ_TOKEN, "next": "//evil.example/"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"  # never an open redirect
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; set when the request came over TLS
    assert READ_TOKEN not in cookie
    cross = await api.post("/login", data={"token": READ_TOKEN}, headers={"Sec-Fetch-Site": "cross-site"},
                           allow_redirects=False)
    assert cross.status == 403


async def test_every_page_renders_for_the_read_role(api: Client, sqlite_store: Store) -> None:
    await _seed(sqlite_store)
    await _login(api, READ_TOKEN)
    now = datetime.now(UTC)
    endpoint = (await sqlite_store.list_endpoints(now)).items[0]
    apis = (await sqlite_store.list_apis(now)).items
    for path in ("/", "/endpoints", f"/endpoints/{endpoint.id}", f"/apis/{apis[0].id}", "/alerts",
                 "/alerts?status=all&severity=high", "/recommendations", "/explorer",
                 "/explorer?template=internet-exposed-sensitive-data", "/sensors",
                 "/endpoints?sort=name&dir=asc&authentication=unauthenticated&external=true&q=pay",
                 "/endpoints?data_type=credit_card&status=active&page=9"):
        resp = await api.get(path)
        body = await resp.text()
        assert resp.status == 200, (path, body[:500])
        assert resp.headers["Cache-Control"] == "no-store"
        assert "<script>alert(1)" not in body  # autoescape: a hostile path is text, not markup
        assert READ_TOKEN not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in await (await api.get("/endpoints")).text()
    for path, status in (("/endpoints/missing", 404), ("/apis/missing", 404), ("/explorer?template=nope", 404),
                         ("/endpoints?status=bogus", 400), ("/alerts?severity=bogus", 400),
                         ("/alerts?cursor=garbage", 400)):
        assert (await api.get(path)).status == status, path


async def test_alert_actions_need_admin_and_csrf(api: Client, sqlite_store: Store) -> None:
    await _seed(sqlite_store)
    alert_id = (await sqlite_store.list_alerts()).items[0].id
    url = f"/alerts/{alert_id}/status"
    assert (await api.post(url, data={"status": "resolved"}, allow_redirects=False)).status == 403  # no session

    csrf = await _login(api, READ_TOKEN)
    assert 'action="/alerts/' not in await (await api.get("/alerts")).text()  # no buttons for read
    resp = await api.post(url, data={"status": "resolved", "csrf": csrf}, allow_redirects=False)
    assert resp.status == 403 and "admin" in await resp.text()
    await api.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert (await api.get("/", allow_redirects=False)).status == 303  # logged out for real

    csrf = await _login(api, ADMIN_TOKEN)
    assert 'action="/alerts/' in await (await api.get("/alerts")).text()
    for form in ({"status": "resolved"}, {"status": "resolved", "csrf": csrf[:-1] + "x"}):
        assert (await api.post(url, data=form, allow_redirects=False)).status == 403
    assert (await sqlite_store.get_alert(alert_id)).status == "active"  # type: ignore[union-attr]
    bad = await api.post(url, data={"status": "gone", "csrf": csrf}, allow_redirects=False)
    assert bad.status == 400
    missing = await api.post("/alerts/none/status", data={"status": "resolved", "csrf": csrf}, allow_redirects=False)
    assert missing.status == 404
    resp = await api.post(url, data={"status": "resolved", "csrf": csrf, "next": "/alerts?status=all"},
                          allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/alerts?status=all"
    row = await sqlite_store.get_alert(alert_id)
    assert row is not None and row.status == "resolved" and row.status_by == "admin-test"


async def test_explorer_shows_the_error_position(api: Client, sqlite_store: Store) -> None:
    await _seed(sqlite_store)
    await _login(api, READ_TOKEN)
    resp = await api.get("/explorer", params={"filter": "  risk >> 3"})
    body = await resp.text()
    assert resp.status == 400
    assert "data-position>8<" in body  # the second '>' of the user's text, leading spaces included
    ok = await api.get("/explorer", params={"filter": 'authentication = "unauthenticated"'})
    assert ok.status == 200 and "/pay" in await ok.text()


# --- charts --------------------------------------------------------------------------------------


def test_charts_escape_text_and_use_no_inline_style() -> None:
    chart = svg.bars([("<b>", 1.0), ("t2", 3.0)], title='x" onload="alert(1)')
    assert "<b>" not in chart and 'onload="' not in chart and "style=" not in chart
    assert chart.startswith('<svg class="chart chart-bars"') and 'role="img"' in chart
    assert "highest 3 at t2" in chart
    lines = svg.lines(["a", "b"], [("p50", [1.0, 2.0]), ("p95", [3.0, 5.0])], title="latency", unit=" ms")
    assert lines.count("<polyline") == 2 and "style=" not in lines
    assert "latest 5 ms" in lines
    single = svg.lines(["a"], [("p50", [1.0])], title="latency")
    assert "<circle" in single
    hbars = svg.hbars([("2xx", 3.0), ("5xx", 1.0), ("4xx", 0.0)], title="status")
    assert "c-2xx" in hbars and "c-4xx" not in hbars and "75%" in hbars
    assert "No data yet" in svg.bars([], title="t") and "No data yet" in svg.hbars([], title="t")


def test_traffic_points_bucket_many_windows() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    few = views.traffic_points([(start + timedelta(seconds=5 * i), 1.0) for i in range(4)])
    assert [v for _, v in few] == [1.0] * 4 and few[0][0] == "00:00:00Z"
    many = views.traffic_points([(start + timedelta(minutes=i), 2.0) for i in range(600)], max_points=60)
    assert len(many) == 60 and sum(v for _, v in many) == 1200.0
    assert views.traffic_points([]) == []


# --- the endpoints table's SQL, on both backends --------------------------------------------------


async def _many(store: Store, n: int) -> None:
    summaries = []
    for i in range(n):
        fields: dict[str, Any] = {}
        if i % 3 == 0:
            fields.update(unauthenticated_success=1)
        if i % 4 == 0:
            fields.update(external_requests=1, last_external=NOW - timedelta(minutes=5))
        if i % 5 == 0:
            fields.update(data_types=[DataTypeSeen(type="email", location="response_body", path="$.e")])
        summaries.append(summary(path=f"/r{i:03d}/{{id}}", at=NOW - timedelta(minutes=5 + i % 7), **fields))
    await store.apply_batch(batch(summaries))


async def test_endpoint_table_sorts_filters_and_pages(store: Store) -> None:
    await _many(store, 120)
    now = datetime.now(UTC)
    api_all = (await store.list_endpoints(now, limit=500)).items
    table = await views.endpoint_table(store, now, EndpointFilter(), sort="endpoint", descending=False, page=1)
    assert table.total == 120 and table.pages == 3 and len(table.rows) == views.PAGE_SIZE
    seen: list[str] = []
    for page in (1, 2, 3):
        t = await views.endpoint_table(store, now, EndpointFilter(), sort="endpoint", descending=False, page=page)
        seen += [r["id"] for r in t.rows]
    assert seen == [f.id for f in api_all]  # same order as the API, no overlap between pages
    beyond = await views.endpoint_table(store, now, EndpointFilter(), page=99)
    assert beyond.page == 3  # clamped

    risk = await views.endpoint_table(store, now, EndpointFilter(), sort="risk", descending=True, page_size=500)
    scores = [r["risk"]["score"] for r in risk.rows]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    expected = sorted((inventory.endpoint_view(f, now)["risk"]["score"] for f in api_all), reverse=True)
    assert scores == expected  # the SQL risk order agrees with the Python scores
    last = await views.endpoint_table(store, now, EndpointFilter(), sort="last_called", descending=True,
                                      page_size=500)
    called = [r["last_called"] for r in last.rows]
    assert called == sorted(called, reverse=True)
    ext = await views.endpoint_table(store, now, EndpointFilter(), sort="external", descending=True, page_size=500)
    externals = [r["external_traffic_observed"] for r in ext.rows]
    missing = [x is None for x in externals]
    assert externals[0] is not None and missing == sorted(missing)  # NULLs last, even descending
    dated = [x for x in externals if x]
    assert dated == sorted(dated, reverse=True)

    for filters in (EndpointFilter(authentication="unauthenticated"), EndpointFilter(external=True),
                    EndpointFilter(data_type="email"), EndpointFilter(q="r01"), EndpointFilter(status="active")):
        t = await views.endpoint_table(store, now, filters, page_size=500)
        api_ids = {f.id for f in (await store.list_endpoints(now, filters, limit=500)).items}
        assert {r["id"] for r in t.rows} == api_ids and t.total == len(api_ids), filters


async def test_overview_counts_equal_the_store(store: Store) -> None:
    await _many(store, 30)
    await store.apply_batch(batch([summary(path="/r000/{id}")], [alert(path="/r000/{id}"),
                                                                 alert(type_="X", severity="low")]))
    now = datetime.now(UTC)
    data = await views.overview(store, now)
    assert data["counts"] == await store.inventory_counts(now)
    assert data["alerts"] == {"high": 1, "medium": 0, "low": 1, "informational": 0}
    total = 0
    for f in (await store.list_endpoints(now, limit=500)).items:
        total += sum(w.requests for w in await store.endpoint_windows(f.id))
    assert data["traffic_total"] == total
    assert data["riskiest"] and data["riskiest"][0]["risk"]["score"] >= data["riskiest"][-1]["risk"]["score"]
    assert len(data["sensors"]) == 1 and data["sensors"][0]["health"] == "healthy"


@pytest.mark.parametrize(("age", "health"), [(60, "healthy"), (600, "late"), (3600, "silent")])
def test_sensor_health(age: int, health: str) -> None:
    now = datetime.now(UTC)
    assert views.sensor_health(now - timedelta(seconds=age), now) == health


async def test_fast_risk_equals_the_canonical_sql_and_python(store: Store) -> None:
    """``views.risk_source`` re-derives ``fields.risk_score`` with joins; every factor is exercised here."""
    import json

    import sqlalchemy as sa

    from collector import fields as F
    from collector.specs import parse_spec
    from collector.store import posture_store as ps
    from collector.store import schema as t

    spec = {"openapi": "3.0.3", "info": {"title": "shop", "version": "1"},
            "paths": {"/declared": {"get": {"responses": {"200": {"description": "ok"}}}},
                      "/never": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    await ps.import_spec(store, parse_spec(json.dumps(spec).encode(), "test", "shop"), NOW)
    ext = {"external_requests": 1, "last_external": NOW - timedelta(minutes=5)}
    await store.apply_batch(batch(
        [
            summary(path="/declared"),
            summary(path="/shadow", unauthenticated_success=1, **ext),
            summary(path="/plain", plaintext_requests=3),
            summary(path="/high", data_types=[DataTypeSeen(type="credit_card", location="request_body", path="$")]),
            summary(path="/medium", data_types=[DataTypeSeen(type="email", location="response_body", path="$")]),
            summary(path="/low", data_types=[DataTypeSeen(type="ip_public", location="query", path="ip")]),
            summary(path="/custom", data_types=[DataTypeSeen(type="my_custom", location="query", path="c")]),
            summary(path="/header", data_types=[DataTypeSeen(type="jwt", location="header", path="Authorization")]),
            summary(path="/all", unauthenticated_success=1, plaintext_requests=1, **ext,
                    data_types=[DataTypeSeen(type="iban", location="response_body", path="$.iban"),
                                DataTypeSeen(type="email", location="response_body", path="$.e")]),
            summary(path="/old", at=NOW - timedelta(days=40), unauthenticated_success=1),
        ],
        [alert(path="/plain"), alert(path="/all", type_="X")],
    ))
    await store.apply_batch(batch([], [alert(path="/declared", type_="Y")]))
    declared_alert = (await store.list_alerts()).items
    await store.set_alert_status(next(a.id for a in declared_alert if a.path == "/declared"), "resolved", "t", NOW)
    now = datetime.now(UTC)
    source, fast = views.risk_source(now)
    ep = t.endpoints.c
    async with store.engine.connect() as conn:
        fast_scores = dict((await conn.execute(sa.select(ep.path, fast).select_from(source))).all())
        canonical = dict((await conn.execute(sa.select(ep.path, F.risk_score(now)))).all())
    python = {f.path: inventory.endpoint_view(f, now)["risk"]["score"]
              for f in (await store.list_endpoints(now, limit=500)).items}
    assert fast_scores == canonical == python
    assert len(set(fast_scores.values())) >= 6  # the cases really differ
    by_api = await views.highest_risk_by_api(store, [f.api_id for f in (await store.list_endpoints(now)).items], now)
    assert by_api == {aid: {"score": r["score"], "factors": []}
                      for aid, r in (await ps.api_risk(store, list(by_api), now)).items()}
