"""The dashboard in a real browser (Debian's chromium through Playwright) against a demo-seeded collector.

Every page must load without console errors (a CSP violation is one, so this also proves there is no
inline script or style), show the same numbers as the JSON API, and stay usable at phone width.
Screenshots go to test-artifacts/dashboard/; the overview and an endpoint's detail are copied to
docs/screenshots/ for the README.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard.conftest import ARTIFACTS, DEMO_ADMIN, DEMO_INGEST, DEMO_READ, SCREENSHOTS, DemoStack

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


class Tab:
    """A logged-in page that records console errors and uncaught exceptions."""

    def __init__(self, context: Any, base: str) -> None:
        self.context = context
        context.set_default_timeout(10_000)  # fail in seconds, not Playwright's default 30
        self.base = base
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def open(self, path: str, status: int = 200) -> Any:
        self.errors.clear()
        response = self.page.goto(self.base + path, wait_until="load")
        assert response is not None and response.status == status, (path, response and response.status)
        if status == 200:
            assert self.errors == [], (path, self.errors)
        return self.page

    def shot(self, name: str, full_page: bool = True) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def _login(browser: Any, demo: DemoStack, token: str, viewport: dict[str, int] = DESKTOP) -> Tab:
    context = browser.new_context(viewport=viewport, base_url=demo.url)
    tab = Tab(context, demo.url)
    tab.page.goto(demo.url + "/login")
    tab.page.get_by_label("Token").fill(token)
    tab.page.get_by_role("button", name="Log in").click()
    tab.page.wait_for_url(demo.url + "/")
    return tab


@pytest.fixture(scope="module")
def reader(browser: Any, demo: DemoStack) -> Iterator[Tab]:
    tab = _login(browser, demo, DEMO_READ)
    yield tab
    tab.context.close()


@pytest.fixture(scope="module")
def admin(browser: Any, demo: DemoStack) -> Iterator[Tab]:
    tab = _login(browser, demo, DEMO_ADMIN)
    yield tab
    tab.context.close()


def _interesting_endpoint(demo: DemoStack) -> dict[str, Any]:
    """The riskiest endpoint that saw traffic: the one worth a screenshot."""
    called = [e for e in demo.api_all("/api/v1/endpoints") if e["requests_30d"] > 0]
    return max(called, key=lambda e: (e["risk"]["score"], e["requests_30d"]))


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text()).strip()


# --- login ---------------------------------------------------------------------------------------


def test_login_is_required_and_bad_tokens_are_refused(browser: Any, demo: DemoStack) -> None:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto(demo.url + "/alerts?status=all")
        assert page.url == demo.url + "/login?next=%2Falerts%3Fstatus%3Dall"  # redirected, and comes back
        page.get_by_label("Token").fill("not-a-token-at-all-0000")
        with page.expect_response(lambda r: r.url.endswith("/login")) as bad:
            page.get_by_role("button", name="Log in").click()
        assert bad.value.status == 401
        assert "not valid" in _text(page, "#login-error")
        page.get_by_label("Token").fill(DEMO_INGEST)
        with page.expect_response(lambda r: r.url.endswith("/login")) as ingest:
            page.get_by_role("button", name="Log in").click()
        assert ingest.value.status == 403
        assert "ingest" in _text(page, "#login-error")
        assert context.cookies() == []  # no session for refused tokens
        page.get_by_label("Token").fill(DEMO_READ)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(demo.url + "/alerts?status=all")
        (cookie,) = context.cookies()
        assert cookie["name"] == "apiward_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert DEMO_READ not in cookie["value"]
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(demo.url + "/login")
        page.goto(demo.url + "/")
        assert page.url.startswith(demo.url + "/login")  # the session is gone server-side
    finally:
        context.close()


# --- every page ----------------------------------------------------------------------------------


def test_every_page_loads_without_console_errors(reader: Tab, demo: DemoStack) -> None:
    endpoint = _interesting_endpoint(demo)
    api = demo.api("/api/v1/apis")["items"][0]
    pages = {
        "overview": "/",
        "endpoints": "/endpoints",
        "api-collection": f"/apis/{api['id']}",
        "endpoint": f"/endpoints/{endpoint['id']}",
        "alerts": "/alerts",
        "recommendations": "/recommendations",
        "explorer": "/explorer?template=internet-exposed-sensitive-data",
        "sensors": "/sensors",
    }
    for name, path in pages.items():
        page = reader.open(path)
        assert page.locator("h1").count() == 1, name
        reader.shot(name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    reader.open("/")
    reader.page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=False)
    reader.open(f"/endpoints/{endpoint['id']}")
    reader.page.screenshot(path=str(SCREENSHOTS / "endpoint.png"), full_page=False)
    shutil.copyfile(SCREENSHOTS / "overview.png", ARTIFACTS / "readme-overview.png")
    shutil.copyfile(SCREENSHOTS / "endpoint.png", ARTIFACTS / "readme-endpoint.png")


# --- the numbers equal the API's -----------------------------------------------------------------


def test_overview_numbers_equal_the_api(reader: Tab, demo: DemoStack) -> None:
    page = reader.open("/")
    inventory = demo.api("/api/v1/inventory")
    tiles = page.locator("ul.tiles").first
    for name, value in inventory["counts"].items():
        assert _text(tiles, f'[data-count="{name}"]') == str(value), name
    assert _text(tiles, '[data-count="sensors"]') == str(len(inventory["sensors"]))
    assert inventory["counts"]["endpoints"] > 5 and inventory["counts"]["unauthenticated"] > 0
    for api in demo.api_all("/api/v1/apis"):
        row = page.locator(f'tr[data-api="{api["id"]}"]')
        for name in ("endpoints", "inactive", "unauthenticated", "external", "with_sensitive_data", "awaiting_data"):
            assert _text(row, f'[data-count="{name}"]') == str(api["counts"][name]), (api["name"], name)
        assert _text(row, "[data-risk]") == str(api["risk"]["score"])
    for severity in ("high", "medium", "low", "informational"):
        expected = len(demo.api_all("/api/v1/alerts", {"status": "active", "severity": severity}))
        assert _text(page, f'[data-alerts="{severity}"]') == str(expected), severity
    riskiest = [e for e in demo.api_all("/api/v1/endpoints") if e["risk"]["score"] > 0]
    riskiest.sort(key=lambda e: (-e["risk"]["score"], e["api"], e["path"], e["method"]))
    shown = page.locator("table.risky tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert shown == [e["id"] for e in riskiest[:10]]
    assert page.locator("svg.chart-bars rect.bar").count() >= 2  # traffic over time, several windows
    assert int(_text(page, "[data-traffic-total]")) > 0


def test_endpoints_table_filters_sort_and_awaiting_data(reader: Tab, demo: DemoStack) -> None:
    page = reader.open("/endpoints?sort=endpoint&dir=asc")
    everything = demo.api_all("/api/v1/endpoints")
    ids = page.locator("table.endpoints tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    ordered = sorted(everything, key=lambda e: (e["path"], e["method"], e["api"]))
    assert ids == [e["id"] for e in ordered]
    assert _text(page, "[data-total]") == str(len(everything))
    headers = page.locator("table.endpoints thead th").all_inner_texts()
    for column in ("Endpoint name", "Endpoint", "Last called (UTC)", "30 days unused", "Authentication",
                   "External traffic observed (UTC)", "Data classification", "Risk"):
        assert any(h.strip().startswith(column) for h in headers), column

    def shown() -> set[str]:
        return set(page.locator("table.endpoints tbody tr[data-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"))

    # A select applies on change (progressive enhancement); the result equals the API's filter.
    page.get_by_label("Authentication").select_option("unauthenticated")
    page.wait_for_url(re.compile(r"authentication=unauthenticated"))
    expected = {e["id"] for e in demo.api_all("/api/v1/endpoints", {"authentication": "unauthenticated"})}
    assert expected and shown() == expected
    assert reader.errors == []
    page.get_by_label("External traffic").select_option("true")
    page.wait_for_url(re.compile(r"external=true"))
    expected = {e["id"] for e in demo.api_all(
        "/api/v1/endpoints", {"authentication": "unauthenticated", "external": "true"})}
    assert shown() == expected
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Search path").fill("users")
    page.get_by_label("Search path").press("Enter")
    page.wait_for_url(re.compile(r"q=users"))
    expected = {e["id"] for e in demo.api_all("/api/v1/endpoints", {"q": "users"})}
    assert expected and shown() == expected

    # Data type filter: pick a type the demo really carries.
    carried = sorted({d["type"] for e in everything for entries in e["data_classification"].values()
                      for d in entries})
    assert "credit_card" in carried
    reader.open("/endpoints?data_type=credit_card")
    assert shown() == {e["id"] for e in demo.api_all("/api/v1/endpoints", {"data_type": "credit_card"})}

    # Sorting by risk, descending (the default): scores never increase down the table.
    page = reader.open("/endpoints")
    scores = [int(s) for s in page.locator("table.endpoints [data-risk]").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    page.get_by_role("link", name=re.compile("^Risk")).click()
    page.wait_for_url(re.compile(r"sort=risk&dir=asc"))
    scores = [int(s) for s in page.locator("table.endpoints [data-risk]").all_inner_texts()]
    assert scores == sorted(scores)

    # Declared in the spec, never called: the "Awaiting data" state.
    waiting = demo.api_all("/api/v1/endpoints", {"status": "awaiting_data"})
    page = reader.open("/endpoints?status=awaiting_data")
    assert shown() == {e["id"] for e in waiting}
    if waiting:
        assert page.locator('tr[data-status="awaiting_data"] .awaiting').count() == len(waiting)


def test_endpoint_detail_matches_the_api(reader: Tab, demo: DemoStack) -> None:
    chosen = _interesting_endpoint(demo)
    detail = demo.api(f"/api/v1/endpoints/{chosen['id']}")
    page = reader.open(f"/endpoints/{chosen['id']}")
    assert _text(page, '[data-field="requests"]') == str(detail["totals"]["requests"])
    assert _text(page, '[data-field="requests_30d"]') == str(detail["requests_30d"])
    assert _text(page, '[data-field="authentication"]') == detail["authentication"]
    for scheme, n in detail["auth_schemes"].items():
        assert _text(page, f'[data-scheme="{scheme}"]') == str(n)
    assert page.locator("svg.chart-bars").count() == 1  # traffic
    assert page.locator("svg.chart-lines").count() == 1  # latency
    assert page.locator("svg.chart-hbars").count() == 1  # status classes
    for cls in detail["status_classes"]:
        assert page.locator(f"svg.chart-hbars rect.c-{cls}").count() == 1
    for entries in detail["data_classification"].values():
        for d in entries:
            assert page.get_by_role("cell", name=d["type"], exact=True).count() >= 1
    findings = demo.api_all("/api/v1/findings", {"endpoint": chosen["id"]})
    assert page.locator("section[aria-labelledby=h-findings] li").count() == max(len(findings), 1)


def test_sensors_and_recommendations_match_the_api(reader: Tab, demo: DemoStack) -> None:
    page = reader.open("/sensors")
    sensors = demo.api("/api/v1/sensors")["items"]
    assert sensors
    for s in sensors:
        row = page.locator(f'tr[data-sensor="{s["id"]}"]')
        assert _text(row, '[data-field="version"]') == s["version"]
        assert _text(row, '[data-field="batches"]') == str(s["batches"])
        for k in ("exchanges", "dropped_batches", "dropped_summaries", "dropped_requests"):
            assert _text(row, f'[data-field="{k}"]') == str(s["stats"][k]), k
        assert _text(row, ".health") == "healthy"
    page = reader.open("/recommendations")
    for rec in demo.api("/api/v1/recommendations")["items"]:
        card = page.locator(f'[data-rec="{rec["id"]}"]')
        assert _text(card, "[data-affected]") == str(len(rec["affected_endpoints"]))
        for e in rec["affected_endpoints"]:
            assert card.locator(f'a[href="/endpoints/{e["id"]}"]').count() == 1


# --- alerts: filters, resolve/dismiss, roles and CSRF ---------------------------------------------


def test_alert_filters_equal_the_api(reader: Tab, demo: DemoStack) -> None:
    page = reader.open("/alerts")
    rows = lambda: page.locator("table.alerts tbody tr[data-alert]").evaluate_all(  # noqa: E731
        "rows => rows.map(r => r.dataset.alert)")
    assert rows() == [a["id"] for a in demo.api_all("/api/v1/alerts", {"status": "active"})][:50]
    high = demo.api_all("/api/v1/alerts", {"status": "active", "severity": "high"})
    page.get_by_label("Severity").select_option("high")
    page.wait_for_url(re.compile(r"severity=high"))
    assert rows() == [a["id"] for a in high][:50]
    types = sorted({a["type"] for a in demo.api_all("/api/v1/alerts")})
    assert types
    page = reader.open(f"/alerts?status=all&type={types[0]}")
    assert rows() == [a["id"] for a in demo.api_all("/api/v1/alerts", {"type": types[0]})][:50]


def test_admin_resolves_and_dismisses_alerts(admin: Tab, demo: DemoStack) -> None:
    page = admin.open("/alerts")
    active = demo.api_all("/api/v1/alerts", {"status": "active"})
    assert len(active) >= 2, "the demo traffic should raise several alerts"
    first, second = active[0]["id"], active[1]["id"]
    page.locator(f'tr[data-alert="{first}"]').get_by_role("button", name="Resolve").click()
    page.wait_for_load_state()
    assert admin.errors == []
    changed = [a for a in demo.api_all("/api/v1/alerts", {"status": "resolved"}) if a["id"] == first]
    assert changed and changed[0]["status_changed_by"] == "dash-admin"
    assert page.locator(f'tr[data-alert="{first}"]').count() == 0  # gone from the active list

    page.once("dialog", lambda dialog: dialog.accept())  # dismissing asks first (app.js)
    page.locator(f'tr[data-alert="{second}"]').get_by_role("button", name="Dismiss").click()
    page.wait_for_load_state()
    assert [a["id"] for a in demo.api_all("/api/v1/alerts", {"status": "dismissed"})] == [second]

    page = admin.open("/alerts?status=resolved")
    page.locator(f'tr[data-alert="{first}"]').get_by_role("button", name="Reopen").click()
    page.wait_for_load_state()
    assert any(a["id"] == first for a in demo.api_all("/api/v1/alerts", {"status": "active"}))


def test_read_role_sees_no_buttons_and_cannot_post(reader: Tab, demo: DemoStack) -> None:
    page = reader.open("/alerts?status=all")
    assert page.locator("table.alerts tbody tr[data-alert]").count() > 0
    assert page.locator("table.alerts button").count() == 0
    csrf = page.locator('form[action="/logout"] input[name="csrf"]').input_value()  # a valid token
    alert_id = demo.api_all("/api/v1/alerts", {"status": "active"})[0]["id"]
    resp = reader.context.request.post(
        f"{demo.url}/alerts/{alert_id}/status", form={"csrf": csrf, "status": "resolved"}, max_redirects=0
    )
    assert resp.status == 403
    assert "admin" in resp.text()
    assert demo.api_all("/api/v1/alerts", {"status": "active"})[0]["id"] == alert_id  # unchanged


def test_csrf_token_is_required(admin: Tab, demo: DemoStack) -> None:
    alert_id = demo.api_all("/api/v1/alerts", {"status": "active"})[0]["id"]
    url = f"{demo.url}/alerts/{alert_id}/status"
    for form in ({"status": "resolved"}, {"status": "resolved", "csrf": "forged-token"}):
        resp = admin.context.request.post(url, form=form, max_redirects=0)
        assert resp.status == 403, form
    csrf = admin.open("/alerts").locator('form[action="/logout"] input[name="csrf"]').input_value()
    cross = admin.context.request.post(url, form={"status": "resolved", "csrf": csrf},
                                       headers={"Sec-Fetch-Site": "cross-site"}, max_redirects=0)
    assert cross.status == 403
    assert any(a["id"] == alert_id for a in demo.api_all("/api/v1/alerts", {"status": "active"}))


# --- explorer -----------------------------------------------------------------------------------


def test_explorer_templates_and_filter_errors(reader: Tab, demo: DemoStack) -> None:
    templates = demo.api("/api/v1/query/templates")["items"]
    page = reader.open("/explorer")
    for tpl in templates:
        assert page.get_by_role("link", name=tpl["title"]).count() == 1
    page.get_by_role("link", name=templates[0]["title"]).click()
    page.wait_for_url(re.compile("template="))
    expected = [e["id"] for e in demo_query(demo, templates[0]["id"])]
    assert page.locator("table.endpoints tbody tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)") == expected

    broken = "external and authentication = "
    page.get_by_label("Filter expression").fill(broken)
    with page.expect_response(lambda r: "/explorer?" in r.url) as answer:
        page.get_by_role("button", name="Run").click()
    assert answer.value.status == 400
    error = _text(page, "#filter-error")
    assert "position" in error and _text(page, "[data-position]") == str(len(broken))
    page.get_by_label("Filter expression").fill('authentication = "unauthenticated"')
    page.get_by_role("button", name="Run").click()
    page.wait_for_load_state()
    shown = page.locator("table.endpoints tbody tr[data-id]").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert shown == [e["id"] for e in demo.api_all("/api/v1/endpoints", {"authentication": "unauthenticated"})]


def demo_query(demo: DemoStack, template: str) -> list[dict[str, Any]]:
    import json
    import urllib.request

    request = urllib.request.Request(
        demo.url + "/api/v1/query", data=json.dumps({"template": template}).encode(),
        headers={"Authorization": f"Bearer {DEMO_READ}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        items: list[dict[str, Any]] = json.loads(resp.read())["items"]
    return items


# --- layout and keyboard ------------------------------------------------------------------------


def test_phone_width_has_no_horizontal_overflow(browser: Any, demo: DemoStack) -> None:
    tab = _login(browser, demo, DEMO_ADMIN, viewport=PHONE)
    try:
        endpoint = _interesting_endpoint(demo)
        for name, path in {"overview": "/", "endpoints": "/endpoints", "endpoint": f"/endpoints/{endpoint['id']}",
                           "alerts": "/alerts?status=all", "recommendations": "/recommendations",
                           "explorer": "/explorer?template=internet-exposed-sensitive-data",
                           "sensors": "/sensors"}.items():
            page = tab.open(path)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, (name, overflow)
            tab.shot(f"phone-{name}")
    finally:
        tab.context.close()


def test_keyboard_skip_link_focus_and_headers(reader: Tab, demo: DemoStack) -> None:
    page = reader.open("/endpoints")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Every form control has a label.
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.name)""")
    assert unlabelled == []
    response = page.goto(demo.url + "/")
    assert response is not None
    headers = response.headers
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"
