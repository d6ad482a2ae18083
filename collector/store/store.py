"""The ``Store``: applies batches (idempotent, increment-only upserts) and answers the read queries.

All IO to the database lives here. Writes are one transaction per batch: the batch id row goes in
first, so a duplicate (also one racing in from another collector) turns the whole batch into a no-op.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from collector.settings import database_driver_url
from collector.store import alert_store, fleet_store
from collector.store import schema as t
from collector.store.migrations import migrate
from collector.store.rows import BatchRows, Row, build_rows
from sensor.events import Batch

T = TypeVar("T")
ACTIVE_DAYS = 30
ALERT_STATUSES = ("active", "resolved", "dismissed")  # what an admin may set
ALERT_LIST_STATUSES = (*ALERT_STATUSES, "suppressed")  # "suppressed" is set by suppression rules only
# PostgreSQL: deadlock_detected, serialization_failure, unique_violation. Retrying the whole batch is
# safe because the batch id row rolls back with everything else. unique_violation belongs here: when two
# collectors insert the same new row at once, ON CONFLICT (id) only arbitrates the id index, so the
# loser can trip over another unique index (e.g. apis.name) instead; on retry the row exists and the
# upsert takes its DO UPDATE path.
_RETRY_SQLSTATES = {"40P01", "40001", "23505"}
_MAX_ATTEMPTS = 6
_CHUNK = 500  # ids per IN (...) list


class InvalidCursor(ValueError):
    """A paging cursor that this collector did not issue."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DataTypeRow:
    type: str
    location: str
    path: str
    status_class: str
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(slots=True)
class EndpointFacts:
    """One endpoint's stored facts; ``collector.inventory`` turns them into the API's fields."""

    id: str
    api_id: str
    api: str
    method: str
    path: str
    name: str | None
    from_spec: bool
    first_seen: datetime | None
    last_called: datetime | None
    last_external: datetime | None
    requests: int
    unauthenticated_success: int
    authenticated_success: int
    unauthenticated_rejected: int
    plaintext_requests: int
    external_requests: int
    requests_30d: int = 0
    auth_schemes: dict[str, int] = field(default_factory=dict)
    status_classes: dict[str, int] = field(default_factory=dict)
    data_types: list[DataTypeRow] = field(default_factory=list)  # seen in the last 30 days
    active_alerts: int = 0
    active_high_alerts: int = 0
    # The imported spec's word (collector.specs); ``api_has_spec`` makes a missing row a shadow.
    api_has_spec: bool = False
    in_spec: bool = False
    deprecated: bool = False
    spec_security: list[list[str]] | None = None
    spec_params: list[tuple[str, str]] = field(default_factory=list)
    body_declared: bool = False
    recent_params: list[ParamRow] = field(default_factory=list)  # seen in the last 30 days
    findings_count: int = 0  # open findings
    jwt_facts: dict[str, int] = field(default_factory=dict)  # requests per JWT fact, seen in the last 30 days


@dataclass(frozen=True, slots=True)
class ApiRow:
    id: str
    name: str
    first_seen: datetime
    last_seen: datetime
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class SensorRow:
    id: str
    name: str
    version: str
    mode: str
    started_at: datetime
    first_seen: datetime
    last_batch_at: datetime
    last_seq: int
    batches: int
    exchanges: int
    analysis_errors: int
    dropped_batches: int
    dropped_summaries: int
    dropped_requests: int
    spooled_batches: int


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: str
    type: str
    title: str
    severity: str
    endpoint_id: str
    api: str
    method: str
    path: str
    client_ip: str
    principal: str
    count: int
    first_seen: datetime
    last_seen: datetime
    evidence: dict[str, Any]
    rule_ids: list[str]
    status: str
    status_by: str | None
    status_at: datetime | None


@dataclass(frozen=True, slots=True)
class ParamRow:
    location: str
    name: str
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class WindowRow:
    sensor_id: str
    window_start: datetime
    window_end: datetime
    requests: int
    latency_p50: float
    latency_p95: float
    latency_max: float
    request_size_p50: float
    request_size_p95: float
    request_size_max: float
    response_size_p50: float
    response_size_p95: float
    response_size_max: float


@dataclass(frozen=True, slots=True)
class EndpointFilter:
    api: str | None = None  # name or id
    method: str | None = None
    status: str | None = None  # active | inactive | awaiting_data
    authentication: str | None = None  # authenticated | unauthenticated | unknown
    external: bool | None = None
    data_type: str | None = None
    q: str | None = None  # substring of the path, case-insensitive


@dataclass(frozen=True, slots=True)
class AlertFilter:
    type: str | None = None
    severity: str | None = None
    status: str | None = None
    endpoint_id: str | None = None


# --- cursors -------------------------------------------------------------------------------------


def encode_cursor(key: Sequence[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not valid") from exc
    if not isinstance(key, list) or len(key) != size or not all(isinstance(k, str) for k in key):
        raise InvalidCursor("cursor is not valid")
    return key


# --- SQL expressions shared by filters, counts and (mirrored in Python by) collector.inventory ----


def status_expr(now: datetime) -> sa.ColumnElement[str]:
    ep = t.endpoints.c
    return sa.case(
        (ep.last_called.is_(None), sa.literal("awaiting_data")),
        (ep.last_called >= sa.literal(now - timedelta(days=ACTIVE_DAYS), t.UTCDateTime()), sa.literal("active")),
        else_=sa.literal("inactive"),
    )


def recent_cutoff(now: datetime) -> datetime:
    """Facts older than this do not count any more (the 30-day reset)."""
    return now - timedelta(days=ACTIVE_DAYS)


def auth_expr(now: datetime) -> sa.ColumnElement[str]:
    ep = t.endpoints.c
    recent = ep.last_called >= sa.literal(recent_cutoff(now), t.UTCDateTime())
    return sa.case(
        # An endpoint not called for 30 days is back to unknown: what it did then says little now.
        (sa.or_(ep.last_called.is_(None), sa.not_(recent)), sa.literal("unknown")),
        (ep.unauthenticated_success > 0, sa.literal("unauthenticated")),
        (
            sa.or_(ep.authenticated_success > 0, ep.unauthenticated_rejected > 0),
            sa.literal("authenticated"),
        ),
        else_=sa.literal("unknown"),
    )


def external_expr(now: datetime) -> sa.ColumnElement[bool]:
    return t.endpoints.c.last_external >= sa.literal(recent_cutoff(now), t.UTCDateTime())


def _has_data_types(now: datetime) -> sa.Exists:
    dt = t.endpoint_data_types.c
    return sa.exists().where(
        dt.endpoint_id == t.endpoints.c.id, dt.last_seen >= sa.literal(recent_cutoff(now), t.UTCDateTime())
    )


def _count_columns(now: datetime) -> list[sa.Label[Any]]:
    ep = t.endpoints.c
    status, auth = status_expr(now), auth_expr(now)

    def n(cond: sa.ColumnElement[bool], label: str) -> sa.Label[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0).label(label)

    return [
        sa.func.count(ep.id).label("endpoints"),
        n(status == "active", "active"),
        n(status == "inactive", "inactive"),
        n(status == "awaiting_data", "awaiting_data"),
        n(auth == "unauthenticated", "unauthenticated"),
        n(external_expr(now), "external"),
        n(_has_data_types(now), "with_sensitive_data"),
    ]


COUNT_NAMES = (
    "endpoints", "active", "inactive", "awaiting_data", "unauthenticated", "external", "with_sensitive_data"
)


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        # SQLite has one writer at a time; serialising our own writes avoids SQLITE_BUSY churn.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self._dialect == "sqlite" else None
        # Grouping window, suppression and export routes; the export service installs the configured one.
        self.alert_policy = alert_store.AlertPolicy()

    @property
    def dialect(self) -> str:
        return self._dialect

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect, (for SQLite) switch to WAL, and migrate to the latest schema."""
        driver_url = database_driver_url(url)
        kwargs: dict[str, Any] = {}
        is_sqlite = driver_url.startswith("sqlite")
        if is_sqlite:
            path = driver_url.partition("://")[2].lstrip("/").split("?")[0]
            if path in ("", ":memory:"):
                # One shared connection, or every pool checkout would see its own empty database.
                kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        engine = create_async_engine(driver_url, **kwargs)
        if is_sqlite:
            _sqlite_setup(engine)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.select(sa.func.count()).select_from(t.schema_version))

    # --- writes ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self._engine.begin() as conn:
            yield conn

    async def write(self, work: Callable[[AsyncConnection], Any]) -> Any:
        """Run ``work`` in one write transaction, retried on PostgreSQL deadlocks/serialization."""
        return await self._retrying(work)

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (with ``on_conflict_do_*``)."""
        return self._insert(table)

    async def _retrying(self, work: Callable[[AsyncConnection], Any]) -> Any:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                async with self._writing() as conn:
                    return await work(conn)
            except DBAPIError as exc:
                code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
                if code not in _RETRY_SQLSTATES or attempt == _MAX_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)
        raise AssertionError("unreachable")

    async def apply_batch(self, batch: Batch, received_at: datetime | None = None) -> bool:
        """Apply a batch once. False when this batch id was already applied (nothing changes)."""
        rows = build_rows(batch, received_at or datetime.now(UTC))

        async def work(conn: AsyncConnection) -> tuple[bool, int]:
            stmt = self._insert(t.batches).values(rows.batch).on_conflict_do_nothing()
            result = await conn.execute(stmt)
            if result.rowcount == 0:
                return False, 0
            return True, await self._apply_rows(conn, rows)

        applied, queued = await self._retrying(work)
        if queued:
            self.alert_policy.notify()  # after the commit: the dispatchers can see the rows now
        return bool(applied)

    def _insert(self, table: sa.Table) -> Any:
        # Both dialects' Insert have ``excluded`` and ``on_conflict_do_*`` with the same signature.
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _least(self, a: Any, b: Any) -> Any:
        # PostgreSQL LEAST ignores NULLs; SQLite's scalar min() returns NULL, hence the coalesces.
        if self._dialect == "postgresql":
            return sa.func.least(a, b)
        return sa.func.min(sa.func.coalesce(a, b), sa.func.coalesce(b, a))

    def _greatest(self, a: Any, b: Any) -> Any:
        if self._dialect == "postgresql":
            return sa.func.greatest(a, b)
        return sa.func.max(sa.func.coalesce(a, b), sa.func.coalesce(b, a))

    async def _upsert(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        rows: list[Row],
        set_: Callable[[Any], dict[str, Any]],
    ) -> None:
        if not rows:
            return
        stmt = self._insert(table)
        keys = [c.name for c in table.primary_key.columns]
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=set_(stmt.excluded))
        await conn.execute(stmt, rows)

    def _counting(self, table: sa.Table, *names: str, seen: bool = False) -> Callable[[Any], dict[str, Any]]:
        """``SET n = t.n + excluded.n`` for each counter (and first/last seen as min/max)."""

        def set_(ex: Any) -> dict[str, Any]:
            values: dict[str, Any] = {n: table.c[n] + ex[n] for n in names}
            if seen:
                values["first_seen"] = self._least(table.c.first_seen, ex.first_seen)
                values["last_seen"] = self._greatest(table.c.last_seen, ex.last_seen)
            return values

        return set_

    async def _apply_rows(self, conn: AsyncConnection, rows: BatchRows) -> int:
        """Write the batch's rows; returns how many export events were queued."""
        s = t.sensors.c

        def sensor_set(ex: Any) -> dict[str, Any]:
            # Stats are cumulative per sensor run: the newest report (by start time, then seq) wins.
            newer = sa.or_(
                ex.started_at > s.started_at,
                sa.and_(ex.started_at == s.started_at, ex.last_seq >= s.last_seq),
            )
            latest = (
                "name", "version", "mode", "started_at", "last_seq", "exchanges", "analysis_errors",
                "dropped_batches", "dropped_summaries", "dropped_requests", "spooled_batches",
            )
            values: dict[str, Any] = {n: sa.case((newer, ex[n]), else_=s[n]) for n in latest}
            values["batches"] = s.batches + 1
            values["last_batch_at"] = self._greatest(s.last_batch_at, ex.last_batch_at)
            return values

        await self._upsert(conn, t.sensors, [rows.sensor], sensor_set)
        await self._upsert(conn, t.apis, rows.apis, self._counting(t.apis, seen=True))

        e = t.endpoints.c

        def endpoint_set(ex: Any) -> dict[str, Any]:
            counters = (
                "requests", "unauthenticated_success", "authenticated_success",
                "unauthenticated_rejected", "plaintext_requests", "external_requests",
            )
            values: dict[str, Any] = {n: e[n] + ex[n] for n in counters}
            values.update(
                name=sa.func.coalesce(ex.name, e.name),
                from_spec=sa.or_(e.from_spec, ex.from_spec),
                first_seen=self._least(e.first_seen, ex.first_seen),
                last_called=self._greatest(e.last_called, ex.last_called),
                last_external=self._greatest(e.last_external, ex.last_external),
            )
            return values

        await self._upsert(conn, t.endpoints, rows.endpoints, endpoint_set)
        await self._upsert(
            conn, t.endpoint_daily, rows.daily, self._counting(t.endpoint_daily, "requests", "external_requests")
        )
        await self._upsert(conn, t.endpoint_auth, rows.auth, self._counting(t.endpoint_auth, "count"))
        await self._upsert(conn, t.endpoint_status, rows.status, self._counting(t.endpoint_status, "count"))
        await self._upsert(
            conn, t.endpoint_params, rows.params, self._counting(t.endpoint_params, "count", seen=True)
        )
        await self._upsert(
            conn, t.endpoint_data_types, rows.data_types, self._counting(t.endpoint_data_types, "count", seen=True)
        )
        await self._upsert(conn, t.endpoint_jwt, rows.jwt, self._counting(t.endpoint_jwt, "count", seen=True))
        w = t.endpoint_windows.c

        def window_set(ex: Any) -> dict[str, Any]:
            # The same sensor window split across batches: add requests, keep maxima, and keep the
            # later percentiles (they cannot be merged exactly).
            values: dict[str, Any] = {"requests": w.requests + ex.requests}
            for prefix in ("latency", "request_size", "response_size"):
                values[f"{prefix}_p50"] = ex[f"{prefix}_p50"]
                values[f"{prefix}_p95"] = ex[f"{prefix}_p95"]
                values[f"{prefix}_max"] = self._greatest(w[f"{prefix}_max"], ex[f"{prefix}_max"])
            values["window_end"] = self._greatest(w.window_end, ex.window_end)
            values["status_classes"] = fleet_store.merged_status_classes(self._dialect)  # per-class sums
            return values

        await self._upsert(conn, t.endpoint_windows, rows.windows, window_set)
        await fleet_store.put_sketches(self, conn, rows.sketches)

        # Alerts row by row: grouping within the window, suppression, history and export events
        # (``alert_store``) need each alert's state before and after.
        return await alert_store.apply_alerts(self, conn, rows.alerts, rows.batch["received_at"], self.alert_policy)

    async def set_alert_status(self, alert_id: str, status: str, who: str, at: datetime) -> AlertRow | None:
        """Set the status, record who and when in the history, and queue the export event."""
        if status not in ALERT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ALERT_STATUSES)}")

        async def work(conn: AsyncConnection) -> tuple[AlertRow | None, int]:
            return await alert_store.set_status(self, conn, alert_id, status, who=who, at=at, policy=self.alert_policy)

        result: tuple[AlertRow | None, int] = await self._retrying(work)
        if result[1]:
            self.alert_policy.notify()
        return result[0]

    # --- reads -----------------------------------------------------------------------------------

    async def inventory_counts(self, now: datetime) -> dict[str, int]:
        async with self._engine.connect() as conn:
            apis = await conn.scalar(sa.select(sa.func.count()).select_from(t.apis))
            row = (await conn.execute(sa.select(*_count_columns(now)))).one()
        counts = {name: int(row._mapping[name] or 0) for name in COUNT_NAMES}
        counts["apis"] = int(apis or 0)
        return counts

    async def list_apis(self, now: datetime, limit: int = 100, cursor: str | None = None) -> Page[ApiRow]:
        query = sa.select(t.apis).order_by(t.apis.c.name).limit(limit + 1)
        if cursor:
            (after,) = decode_cursor(cursor, 1)
            query = query.where(t.apis.c.name > after)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            counts = await self._api_counts(conn, now, [r["id"] for r in rows[:limit]])
        items = [
            ApiRow(r["id"], r["name"], r["first_seen"], r["last_seen"], counts.get(r["id"], _zero_counts()))
            for r in rows[:limit]
        ]
        next_cursor = encode_cursor([items[-1].name]) if len(rows) > limit else None
        return Page(items, next_cursor)

    async def get_api(self, api_id: str, now: datetime) -> ApiRow | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(t.apis).where(t.apis.c.id == api_id))).mappings().first()
            if r is None:
                return None
            counts = await self._api_counts(conn, now, [api_id])
        return ApiRow(r["id"], r["name"], r["first_seen"], r["last_seen"], counts.get(api_id, _zero_counts()))

    async def _api_counts(self, conn: AsyncConnection, now: datetime, api_ids: list[str]) -> dict[str, dict[str, int]]:
        if not api_ids:
            return {}
        query = (
            sa.select(t.endpoints.c.api_id, *_count_columns(now))
            .where(t.endpoints.c.api_id.in_(api_ids))
            .group_by(t.endpoints.c.api_id)
        )
        out: dict[str, dict[str, int]] = {}
        for row in (await conn.execute(query)).mappings():
            out[row["api_id"]] = {name: int(row[name] or 0) for name in COUNT_NAMES}
        return out

    async def list_endpoints(
        self,
        now: datetime,
        filters: EndpointFilter = EndpointFilter(),
        limit: int = 100,
        cursor: str | None = None,
        where: sa.ColumnElement[bool] | None = None,
    ) -> Page[EndpointFacts]:
        """Endpoints in (api, path, method) order; ``where`` is an extra condition (the explorer's)."""
        ep = t.endpoints.c
        query = sa.select(t.endpoints).order_by(ep.api, ep.path, ep.method).limit(limit + 1)
        for cond in _endpoint_conditions(filters, now):
            query = query.where(cond)
        if where is not None:
            query = query.where(where)
        if cursor:
            key = decode_cursor(cursor, 3)
            query = query.where(sa.tuple_(ep.api, ep.path, ep.method) > sa.tuple_(*map(sa.literal, key)))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            items = await self._endpoint_facts(conn, now, rows[:limit])
        last = items[-1] if items else None
        next_cursor = encode_cursor([last.api, last.path, last.method]) if last and len(rows) > limit else None
        return Page(items, next_cursor)

    async def get_endpoint(self, endpoint_id: str, now: datetime) -> EndpointFacts | None:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.endpoints).where(t.endpoints.c.id == endpoint_id))).mappings().all()
            items = await self._endpoint_facts(conn, now, rows)
        return items[0] if items else None

    async def endpoint_facts(self, endpoint_ids: Sequence[str], now: datetime) -> list[EndpointFacts]:
        """Facts of these endpoints (posture evaluates them), in the inventory's order."""
        out: list[EndpointFacts] = []
        ep = t.endpoints.c
        async with self._engine.connect() as conn:
            for start in range(0, len(endpoint_ids), _CHUNK):
                chunk = list(endpoint_ids[start : start + _CHUNK])
                query = sa.select(t.endpoints).where(ep.id.in_(chunk)).order_by(ep.api, ep.path, ep.method)
                rows = (await conn.execute(query)).mappings().all()
                out.extend(await self._endpoint_facts(conn, now, rows))
        return out

    async def _endpoint_facts(
        self, conn: AsyncConnection, now: datetime, rows: Sequence[sa.RowMapping]
    ) -> list[EndpointFacts]:
        facts = {r["id"]: EndpointFacts(**dict(r)) for r in rows}
        if not facts:
            return []
        ids_ = list(facts)
        since = now.astimezone(UTC).date() - timedelta(days=ACTIVE_DAYS - 1)
        d = t.endpoint_daily.c
        daily = sa.select(d.endpoint_id, sa.func.sum(d.requests)).where(
            d.endpoint_id.in_(ids_), d.day >= sa.literal(since, sa.Date())
        ).group_by(d.endpoint_id)
        for eid, n in await conn.execute(daily):
            facts[eid].requests_30d = int(n or 0)
        au = t.endpoint_auth.c
        for eid, scheme, n in await conn.execute(
            sa.select(au.endpoint_id, au.scheme, au.count).where(au.endpoint_id.in_(ids_))
        ):
            facts[eid].auth_schemes[scheme] = int(n)
        st = t.endpoint_status.c
        for eid, cls, n in await conn.execute(
            sa.select(st.endpoint_id, st.status_class, st.count).where(st.endpoint_id.in_(ids_))
        ):
            facts[eid].status_classes[cls] = int(n)
        cutoff = sa.literal(recent_cutoff(now), t.UTCDateTime())
        dt = t.endpoint_data_types.c
        query = (
            sa.select(t.endpoint_data_types)
            .where(dt.endpoint_id.in_(ids_), dt.last_seen >= cutoff)
            .order_by(dt.endpoint_id, dt.location, dt.type, dt.path, dt.status_class)
        )
        for r in (await conn.execute(query)).mappings():
            facts[r["endpoint_id"]].data_types.append(
                DataTypeRow(
                    r["type"], r["location"], r["path"], r["status_class"], int(r["count"]),
                    r["first_seen"], r["last_seen"],
                )
            )
        jw = t.endpoint_jwt.c
        for eid, fact, n in await conn.execute(
            sa.select(jw.endpoint_id, jw.fact, jw.count)
            .where(jw.endpoint_id.in_(ids_), jw.last_seen >= cutoff)
            .order_by(jw.endpoint_id, jw.fact)
        ):
            facts[eid].jwt_facts[fact] = int(n)
        al = t.alerts.c
        high = sa.func.sum(sa.case((al.severity == "high", 1), else_=0))
        for eid, n, n_high in await conn.execute(
            sa.select(al.endpoint_id, sa.func.count(), high)
            .where(al.endpoint_id.in_(ids_), al.status == "active")
            .group_by(al.endpoint_id)
        ):
            facts[eid].active_alerts = int(n)
            facts[eid].active_high_alerts = int(n_high or 0)
        await self._spec_facts(conn, now, facts)
        return list(facts.values())

    async def _spec_facts(self, conn: AsyncConnection, now: datetime, facts: dict[str, EndpointFacts]) -> None:
        """Spec declarations, recent parameters and open findings of these endpoints."""
        ids_ = list(facts)
        api_ids = {f.api_id for f in facts.values()}
        with_spec = set(
            (await conn.execute(sa.select(t.specs.c.api_id).where(t.specs.c.api_id.in_(api_ids)))).scalars()
        )
        for f in facts.values():
            f.api_has_spec = f.api_id in with_spec
        es = t.endpoint_spec.c
        for r in (await conn.execute(sa.select(t.endpoint_spec).where(es.endpoint_id.in_(ids_)))).mappings():
            f = facts[r["endpoint_id"]]
            f.in_spec, f.deprecated = True, bool(r["deprecated"])
            f.spec_security = r["security"] if r["security_declared"] else None
            f.spec_params = [(p["location"], p["name"]) for p in r["params"]]
            f.body_declared = bool(r["body_declared"])
        p = t.endpoint_params.c
        cutoff = sa.literal(recent_cutoff(now), t.UTCDateTime())
        query = (
            sa.select(p.endpoint_id, p.location, p.name, p.count, p.first_seen, p.last_seen)
            .where(p.endpoint_id.in_(ids_), p.last_seen >= cutoff)
            .order_by(p.endpoint_id, p.location, p.name)
        )
        for eid, loc, name, count, first, last in await conn.execute(query):
            facts[eid].recent_params.append(ParamRow(loc, name, int(count), first, last))
        fi = t.findings.c
        for eid, n in await conn.execute(
            sa.select(fi.endpoint_id, sa.func.count())
            .where(fi.endpoint_id.in_(ids_), fi.status == "open")
            .group_by(fi.endpoint_id)
        ):
            facts[eid].findings_count = int(n)

    async def endpoint_params(self, endpoint_id: str) -> list[ParamRow]:
        p = t.endpoint_params.c
        query = sa.select(p.location, p.name, p.count, p.first_seen, p.last_seen).where(
            p.endpoint_id == endpoint_id
        ).order_by(p.location, p.name)
        async with self._engine.connect() as conn:
            return [ParamRow(r[0], r[1], int(r[2]), r[3], r[4]) for r in await conn.execute(query)]

    async def endpoint_windows(self, endpoint_id: str, limit: int = 288) -> list[WindowRow]:
        w = t.endpoint_windows.c
        cols = [c for c in t.endpoint_windows.c if c.name not in ("endpoint_id", "status_classes")]
        query = (
            sa.select(*cols)
            .where(w.endpoint_id == endpoint_id)
            .order_by(w.window_start.desc(), w.sensor_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [WindowRow(**dict(r)) for r in reversed(rows)]

    async def list_sensors(self) -> list[SensorRow]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.sensors).order_by(t.sensors.c.id))).mappings().all()
        return [SensorRow(**dict(r)) for r in rows]

    async def list_alerts(
        self, filters: AlertFilter = AlertFilter(), limit: int = 100, cursor: str | None = None
    ) -> Page[AlertRow]:
        a = t.alerts.c
        # Newest activity first; (last_seen, id) is unique so the keyset is exact.
        query = sa.select(t.alerts).order_by(a.last_seen.desc(), a.id.desc()).limit(limit + 1)
        for column, value in (
            (a.type, filters.type),
            (a.severity, filters.severity),
            (a.status, filters.status),
            (a.endpoint_id, filters.endpoint_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if cursor:
            seen, aid = decode_cursor(cursor, 2)
            try:
                seen_at = datetime.fromisoformat(seen)
            except ValueError as exc:
                raise InvalidCursor("cursor is not valid") from exc
            query = query.where(
                sa.tuple_(a.last_seen, a.id) < sa.tuple_(sa.literal(seen_at, t.UTCDateTime()), sa.literal(aid))
            )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        items = [_alert(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor([items[-1].last_seen.isoformat(), items[-1].id])
        return Page(items, next_cursor)

    async def get_alert(self, alert_id: str) -> AlertRow | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(sa.select(t.alerts).where(t.alerts.c.id == alert_id))).mappings().first()
        return _alert(r) if r else None

    async def batch_count(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(t.batches)) or 0)


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_NAMES, 0)


def _alert(r: sa.RowMapping) -> AlertRow:
    values = dict(r)
    values["evidence"] = dict(values["evidence"] or {})
    values["rule_ids"] = list(values["rule_ids"] or [])
    values["count"] = int(values["count"])
    return AlertRow(**values)


def _endpoint_conditions(f: EndpointFilter, now: datetime) -> list[sa.ColumnElement[bool]]:
    ep = t.endpoints.c
    conds: list[sa.ColumnElement[bool]] = []
    if f.api is not None:
        conds.append(sa.or_(ep.api == f.api, ep.api_id == f.api))
    if f.method is not None:
        conds.append(ep.method == f.method.upper())
    if f.status is not None:
        conds.append(status_expr(now) == f.status)
    if f.authentication is not None:
        conds.append(auth_expr(now) == f.authentication)
    if f.external is not None:
        external = sa.func.coalesce(external_expr(now), sa.false())
        conds.append(external if f.external else sa.not_(external))
    if f.data_type is not None:
        dt = t.endpoint_data_types.c
        conds.append(
            sa.exists().where(
                dt.endpoint_id == ep.id,
                dt.type == f.data_type,
                dt.last_seen >= sa.literal(recent_cutoff(now), t.UTCDateTime()),
            )
        )
    if f.q:
        conds.append(sa.func.lower(ep.path).contains(f.q.lower(), autoescape=True))
    return conds


def _sqlite_setup(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, foreign keys, and real transactions (BEGIN emitted by us).

    pysqlite's own transaction handling starts transactions lazily and not for every statement; the
    SQLAlchemy-documented recipe hands transaction control to SQLAlchemy instead.
    """

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoints
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


__all__ = [
    "ACTIVE_DAYS",
    "ALERT_LIST_STATUSES",
    "ALERT_STATUSES",
    "AlertFilter",
    "AlertRow",
    "ApiRow",
    "DataTypeRow",
    "EndpointFacts",
    "EndpointFilter",
    "InvalidCursor",
    "Page",
    "ParamRow",
    "SensorRow",
    "Store",
    "WindowRow",
    "date",
]
