"""What each page shows: reads from the store, shaped for the templates (no HTTP here).

The numbers come from the same store functions and the same view builders as the JSON API
(``inventory_counts``, ``list_apis`` + ``api_risk``, ``inventory.endpoint_view``, ``recommendations.evaluate``,
the store's endpoint filter conditions), so the page and ``/api/v1`` cannot disagree. The few queries
the API has no route for (sorting the endpoints table, alert counts by severity, traffic over time) are
here, read-only, over the same schema and the same SQL mirrors of the derived fields
(``collector.fields``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from collector import explorer, inventory
from collector import fields as F
from collector import recommendations as recs
from collector.alerts import SEVERITIES, alert_view
from collector.posture import FINDING_TYPES
from collector.store import AlertFilter, EndpointFilter, Store
from collector.store import posture_store as ps
from collector.store import schema as t
from collector.store.store import _endpoint_conditions, auth_expr, recent_cutoff, status_expr

from . import svg

PAGE_SIZE = 50
TRAFFIC_HOURS = 24
MAX_POINTS = 60
# A sensor ships at least once per summary window (60 s by default) while it sees traffic, and its
# stats ride on every batch; a few missed windows is "late", half an hour of silence is "silent".
HEALTHY_SECONDS = 5 * 60
LATE_SECONDS = 30 * 60

ep = t.endpoints.c

SORTS: dict[str, str] = {
    "risk": "Risk",
    "name": "Endpoint name",
    "endpoint": "Endpoint",
    "last_called": "Last called",
    "authentication": "Authentication",
    "external": "External traffic observed",
    "status": "Status",
}


def risk_source(now: datetime) -> tuple[sa.FromClause, sa.ColumnElement[int]]:
    """The endpoints joined to per-endpoint aggregates, and the risk score over them.

    The same score as ``collector.fields.risk_score`` (tests compare the two on every endpoint), but
    computed from LEFT JOINs of grouped subqueries instead of correlated EXISTS per row: with 10,000
    endpoints, sorting by risk drops from ~130 ms to a few tens on SQLite, which keeps the overview and
    the default endpoints page under their 300 ms budget.
    """
    cutoff = sa.literal(recent_cutoff(now), t.UTCDateTime())
    dt = t.endpoint_data_types.c
    levels = inventory.sensitivity_levels()
    high = sorted(k for k, v in levels.items() if v == "high")
    low = sorted(k for k, v in levels.items() if v == "low")
    rank = sa.case((dt.type.in_(high), 3), (dt.type.not_in(low), 2), else_=1)
    sens = (
        sa.select(dt.endpoint_id.label("endpoint_id"), sa.func.max(rank).label("rank"))
        .where(dt.last_seen >= cutoff, dt.location.not_in(sorted(inventory.CREDENTIAL_LOCATIONS)))
        .group_by(dt.endpoint_id)
        .subquery("sens")
    )
    al = t.alerts.c
    alerts = (
        sa.select(al.endpoint_id.label("endpoint_id"), sa.func.count().label("n"))
        .where(al.status == "active")
        .group_by(al.endpoint_id)
        .subquery("active_alerts")
    )
    spec = sa.select(t.specs.c.api_id.label("api_id")).subquery("spec")
    declared = sa.select(t.endpoint_spec.c.endpoint_id.label("endpoint_id")).subquery("declared")
    source = (
        t.endpoints.outerjoin(sens, sens.c.endpoint_id == ep.id)
        .outerjoin(alerts, alerts.c.endpoint_id == ep.id)
        .outerjoin(spec, spec.c.api_id == ep.api_id)
        .outerjoin(declared, declared.c.endpoint_id == ep.id)
    )
    p = inventory.RISK_POINTS

    def pts(cond: sa.ColumnElement[bool], points: int) -> sa.ColumnElement[int]:
        return sa.case((cond, points), else_=0)

    shadow = sa.and_(ep.last_called.is_not(None), spec.c.api_id.is_not(None), declared.c.endpoint_id.is_(None))
    total = (
        pts(F.external(now), p["external_traffic"])
        + pts(auth_expr(now) == "unauthenticated", p["unauthenticated"])
        + sa.case(
            (sens.c.rank == 3, p["sensitive_data_high"]),
            (sens.c.rank == 2, p["sensitive_data_medium"]),
            (sens.c.rank == 1, p["sensitive_data_low"]),
            else_=0,
        )
        + pts(F.plaintext(now), p["plaintext_traffic"])
        + pts(sa.func.coalesce(alerts.c.n, 0) > 0, p["active_alerts"])
        + pts(shadow, p["shadow_endpoint"])
    )
    return source, sa.case((total > 100, 100), else_=total)


def _sort_columns(sort: str, now: datetime, risk: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    external_at = sa.case((F.external(now), ep.last_external), else_=sa.null())
    columns: dict[str, list[sa.ColumnElement[Any]]] = {
        "risk": [risk],
        "name": [sa.func.coalesce(ep.name, ep.path)],
        "endpoint": [ep.path, ep.method],
        "last_called": [ep.last_called],
        "authentication": [auth_expr(now)],
        "external": [external_at],
        "status": [status_expr(now)],
    }
    return columns[sort]


@dataclass(frozen=True, slots=True)
class EndpointTable:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


async def endpoint_table(
    store: Store,
    now: datetime,
    filters: EndpointFilter,
    *,
    sort: str = "risk",
    descending: bool = True,
    page: int = 1,
    page_size: int = PAGE_SIZE,
) -> EndpointTable:
    """One page of the endpoints table: ids ordered in SQL (any column, NULLs last), then the full facts
    of just those ids. Offset paging: the table is for people, who jump to page N; the JSON API keeps
    its keyset cursors for programs."""
    conds = _endpoint_conditions(filters, now)
    source: sa.FromClause = t.endpoints
    risk: sa.ColumnElement[Any] = sa.null()
    if sort == "risk":  # the joins only when the risk column is asked for
        source, risk = risk_source(now)
    order: list[Any] = []
    for column in _sort_columns(sort, now, risk):
        order.append(sa.nulls_last(column.desc() if descending else column.asc()))
    order += [ep.api, ep.path, ep.method]  # a total order: pages never overlap
    async with store.engine.connect() as conn:
        total = int(await conn.scalar(sa.select(sa.func.count()).select_from(t.endpoints).where(*conds)) or 0)
        pages = max(1, math.ceil(total / page_size))
        page = min(max(page, 1), pages)
        ids = list((await conn.execute(
            sa.select(ep.id).select_from(source).where(*conds).order_by(*order)
            .offset((page - 1) * page_size).limit(page_size)
        )).scalars())
    facts = {f.id: f for f in await store.endpoint_facts(ids, now)}
    rows = [inventory.endpoint_view(facts[i], now) for i in ids if i in facts]
    return EndpointTable(rows, total, page, pages)


async def data_types_seen(store: Store) -> list[str]:
    """Types for the filter: the policy's, plus any custom type a sensor reported."""
    async with store.engine.connect() as conn:
        seen = set((await conn.execute(sa.select(t.endpoint_data_types.c.type).distinct())).scalars())
    return sorted(seen | set(inventory.sensitivity_levels()))


async def alert_types_seen(store: Store) -> list[str]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(sa.select(t.alerts.c.type).distinct().order_by(t.alerts.c.type))).scalars())


async def active_alerts_by_severity(store: Store) -> dict[str, int]:
    a = t.alerts.c
    query = sa.select(a.severity, sa.func.count()).where(a.status == "active").group_by(a.severity)
    async with store.engine.connect() as conn:
        found = {sev: int(n) for sev, n in await conn.execute(query)}
    return {sev: found.get(sev, 0) for sev in SEVERITIES}


def _label(at: datetime, span: timedelta) -> str:
    at = at.astimezone(UTC)
    return at.strftime("%H:%M:%S" if span < timedelta(hours=1) else "%m-%d %H:%M") + "Z"


def traffic_points(starts: list[tuple[datetime, float]], max_points: int = MAX_POINTS) -> list[tuple[str, float]]:
    """(window start, value) rows, oldest first, as at most ``max_points`` chart columns.

    Few windows (a fresh demo): one column per window. Many: equal time buckets across the span.
    """
    if not starts:
        return []
    span = starts[-1][0] - starts[0][0]
    if len(starts) <= max_points:
        return [(_label(at, span), value) for at, value in starts]
    width = span / max_points or timedelta(seconds=1)
    buckets: dict[int, float] = defaultdict(float)
    for at, value in starts:
        buckets[min(int((at - starts[0][0]) / width), max_points - 1)] += value
    return [(_label(starts[0][0] + width * i, span), buckets.get(i, 0.0)) for i in range(max_points)]


async def traffic(store: Store, now: datetime, endpoint_id: str | None = None) -> list[tuple[str, float]]:
    """Requests per summary window over the last day, all sensors and endpoints added up."""
    w = t.endpoint_windows.c
    query = (
        sa.select(w.window_start, sa.func.sum(w.requests))
        .where(w.window_start >= sa.literal(now - timedelta(hours=TRAFFIC_HOURS), t.UTCDateTime()))
        .group_by(w.window_start)
        .order_by(w.window_start)
    )
    if endpoint_id is not None:
        query = query.where(w.endpoint_id == endpoint_id)
    async with store.engine.connect() as conn:
        rows = [(_aware(at), float(n or 0)) for at, n in await conn.execute(query)]
    return traffic_points(rows)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def riskiest(store: Store, now: datetime, limit: int = 10) -> list[dict[str, Any]]:
    source, risk = risk_source(now)
    score = risk.label("score")
    query = sa.select(ep.id, score).select_from(source).order_by(score.desc(), ep.api, ep.path, ep.method).limit(limit)
    async with store.engine.connect() as conn:
        ids = [eid for eid, s in await conn.execute(query) if s and s > 0]
    facts = {f.id: f for f in await store.endpoint_facts(ids, now)}
    return [inventory.endpoint_view(facts[i], now) for i in ids if i in facts]


async def highest_risk_by_api(store: Store, api_ids: list[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Per API, its highest endpoint score: the ``risk.score`` of ``/api/v1/apis`` (which also counts
    endpoints per factor; the overview shows only the score, and this query is several times faster)."""
    if not api_ids:
        return {}
    source, risk = risk_source(now)
    query = (
        sa.select(ep.api_id, sa.func.max(risk)).select_from(source).where(ep.api_id.in_(api_ids)).group_by(ep.api_id)
    )
    async with store.engine.connect() as conn:
        return {api_id: {"score": int(score or 0), "factors": []} for api_id, score in await conn.execute(query)}


def sensor_health(last_batch_at: datetime | None, now: datetime) -> str:
    if last_batch_at is None:
        return "silent"
    age = (now - _aware(last_batch_at)).total_seconds()
    if age <= HEALTHY_SECONDS:
        return "healthy"
    return "late" if age <= LATE_SECONDS else "silent"


async def sensors(store: Store, now: datetime) -> list[dict[str, Any]]:
    out = []
    for row in await store.list_sensors():
        view = inventory.sensor_view(row)
        view["health"] = sensor_health(row.last_batch_at, now)
        view["dropped_total"] = row.dropped_batches + row.dropped_summaries + row.dropped_requests
        out.append(view)
    return out


async def overview(store: Store, now: datetime) -> dict[str, Any]:
    counts = await store.inventory_counts(now)
    sensor_views = await sensors(store, now)
    apis = await store.list_apis(now, 500)
    risks = await highest_risk_by_api(store, [a.id for a in apis.items], now)
    points = await traffic(store, now)
    return {
        "counts": counts,
        "apis": [inventory.api_view(a, risks.get(a.id)) for a in apis.items],
        "more_apis": apis.next_cursor is not None,
        "sensors": sensor_views,
        "sensors_healthy": sum(1 for s in sensor_views if s["health"] == "healthy"),
        "dropped": {
            name: sum(s["stats"][name] for s in sensor_views)
            for name in ("dropped_batches", "dropped_summaries", "dropped_requests")
        },
        "alerts": await active_alerts_by_severity(store),
        "traffic_svg": svg.bars(points, title=f"Requests per interval, last {TRAFFIC_HOURS} hours (UTC)"),
        "traffic_total": int(sum(v for _, v in points)),
        "riskiest": await riskiest(store, now),
    }


async def recommendations(store: Store, loaded: list[recs.Recommendation], now: datetime) -> list[dict[str, Any]]:
    found = await ps.open_findings_by_type(store, recs.finding_types_needed(loaded))
    counts = await store.inventory_counts(now)
    order = {"unhealthy": 0, "healthy": 1, "not_applicable": 2}
    return sorted(recs.evaluate(loaded, found, counts["endpoints"]), key=lambda r: order.get(r["status"], 3))


def _window_series(windows: list[Any]) -> dict[str, Any]:
    """Windows of several sensors share a start: add their requests, keep the worst latency."""
    by_start: dict[datetime, dict[str, float]] = {}
    for w in windows:
        slot = by_start.setdefault(_aware(w.window_start), {"requests": 0.0, "p50": 0.0, "p95": 0.0})
        slot["requests"] += w.requests
        slot["p50"] = max(slot["p50"], w.latency_p50)
        slot["p95"] = max(slot["p95"], w.latency_p95)
    starts = sorted(by_start)
    span = starts[-1] - starts[0] if starts else timedelta(0)
    labels = [_label(s, span) for s in starts]
    return {
        "traffic": svg.bars([(lb, by_start[s]["requests"]) for lb, s in zip(labels, starts, strict=True)],
                            title="Requests per summary window (UTC)"),
        "latency": svg.lines(
            labels,
            [("p50", [by_start[s]["p50"] for s in starts]), ("p95", [by_start[s]["p95"] for s in starts])],
            title="Latency per summary window, milliseconds", unit=" ms",
        ),
        "windows": len(starts),
    }


async def endpoint_detail(
    store: Store, loaded: list[recs.Recommendation], endpoint_id: str, now: datetime
) -> dict[str, Any] | None:
    facts = await store.get_endpoint(endpoint_id, now)
    if facts is None:
        return None
    view = inventory.endpoint_view(facts, now)
    classes = dict(sorted(facts.status_classes.items()))
    findings = await ps.list_findings(store, ps.FindingFilter(endpoint_id=endpoint_id), limit=100)
    alerts = await store.list_alerts(AlertFilter(endpoint_id=endpoint_id), limit=50)
    related = [
        r for r in await recommendations(store, loaded, now)
        if any(e["id"] == endpoint_id for e in r["affected_endpoints"])
    ]
    return {
        "e": view,
        "status_classes": classes,
        "status_svg": svg.hbars(list(classes.items()), title="Responses by status class"),
        "totals": {
            "requests": facts.requests,
            "authenticated_success": facts.authenticated_success,
            "unauthenticated_success": facts.unauthenticated_success,
            "unauthenticated_rejected": facts.unauthenticated_rejected,
            "external_requests": facts.external_requests,
            "plaintext_requests": facts.plaintext_requests,
        },
        "charts": _window_series(await store.endpoint_windows(endpoint_id)),
        "params": await store.endpoint_params(endpoint_id),
        "findings": [
            {"f": f, "title": FINDING_TYPES.get(f.type, f.type)} for f in findings.items
        ],
        "alerts": [alert_view(a) for a in alerts.items],
        "alerts_more": alerts.next_cursor is not None,
        "recommendations": related,
    }


@dataclass(frozen=True, slots=True)
class ExplorerResult:
    text: str
    template: explorer.Template | None
    rows: list[dict[str, Any]]
    next_cursor: str | None
    error: str | None = None
    position: int | None = None


async def explore(
    store: Store, now: datetime, text: str, template: explorer.Template | None, cursor: str | None
) -> ExplorerResult:
    try:
        condition = explorer.parse_filter(text, now)
    except explorer.QueryError as exc:
        return ExplorerResult(text, template, [], None, exc.message, exc.position)
    page = await store.list_endpoints(now, limit=PAGE_SIZE, cursor=cursor, where=condition)
    return ExplorerResult(text, template, [inventory.endpoint_view(f, now) for f in page.items], page.next_cursor)


__all__ = [
    "PAGE_SIZE",
    "SORTS",
    "EndpointTable",
    "ExplorerResult",
    "endpoint_detail",
    "endpoint_table",
    "explore",
    "overview",
    "recommendations",
    "sensors",
    "traffic_points",
]
