"""Writes and reads for specs, findings, the 30-day reset and retention (all IO, no rules).

Every write is one transaction through ``Store.write`` (retried on PostgreSQL deadlocks), so a failed
spec import leaves the database as it was, and two collectors sharing PostgreSQL stay consistent:
counters are only ever added to in SQL, findings are keyed by a content hash, and window compaction
deletes the rows it rolls up *first* (``DELETE ... RETURNING``) so that a second collector compacting
at the same time finds nothing left to count twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.posture import Finding
from collector.specs import ParsedSpec
from collector.store import ids
from collector.store import schema as t
from collector.store.store import (
    EndpointFacts,
    InvalidCursor,
    Page,
    Store,
    decode_cursor,
    encode_cursor,
    recent_cutoff,
)

_CHUNK = 500
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2, "informational": 3}


@dataclass(frozen=True, slots=True)
class ImportResult:
    api_id: str
    api: str
    operations: int
    new_endpoints: int
    spec_format: str
    etag: str


@dataclass(frozen=True, slots=True)
class FindingRow:
    id: str
    type: str
    severity: str
    endpoint_id: str
    api_id: str
    api: str
    method: str
    path: str
    evidence: dict[str, Any]
    status: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class FindingFilter:
    type: str | None = None
    severity: str | None = None
    status: str | None = None
    endpoint_id: str | None = None
    api: str | None = None  # name or id


# --- specs ---------------------------------------------------------------------------------------


async def import_spec(store: Store, spec: ParsedSpec, now: datetime) -> ImportResult:
    """Replace the API's spec and declare its operations as endpoints, in one transaction."""
    api_id = ids.api_id(spec.api)
    etag = spec.etag()

    async def work(conn: AsyncConnection) -> int:
        await conn.execute(
            store.insert(t.apis)
            .values(id=api_id, name=spec.api, first_seen=now, last_seen=now)
            .on_conflict_do_nothing()
        )
        spec_row = {
            "api_id": api_id, "api": spec.api, "title": spec.title[:300], "version": spec.version[:100],
            "spec_format": spec.spec_format, "base_url": spec.base_url[:2048], "base_path": spec.base_path[:2048],
            "source": spec.source[:2048], "operations": spec.template_list(), "etag": etag, "imported_at": now,
        }
        stmt = store.insert(t.specs).values(spec_row)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["api_id"], set_={k: stmt.excluded[k] for k in spec_row if k != "api_id"}
            )
        )
        existing = set(
            (await conn.execute(sa.select(t.endpoints.c.id).where(t.endpoints.c.api_id == api_id))).scalars()
        )
        endpoint_rows, spec_rows = [], []
        for op in spec.operations:
            eid = ids.endpoint_id(spec.api, op.method, op.path)
            endpoint_rows.append({
                "id": eid, "api_id": api_id, "api": spec.api, "method": op.method, "path": op.path[:2048],
                "name": op.name, "from_spec": True, "first_seen": None, "last_called": None,
                "last_external": None, "requests": 0, "unauthenticated_success": 0, "authenticated_success": 0,
                "unauthenticated_rejected": 0, "plaintext_requests": 0, "external_requests": 0,
            })
            spec_rows.append({
                "endpoint_id": eid, "api_id": api_id, "operation_id": op.operation_id,
                "deprecated": op.deprecated, "security": op.security or [],
                "security_declared": op.security is not None,
                "params": [{"location": loc, "name": name[:256]} for loc, name in op.params],
                "body_declared": op.body_declared,
            })
        await conn.execute(t.endpoint_spec.delete().where(t.endpoint_spec.c.api_id == api_id))
        if endpoint_rows:
            stmt = store.insert(t.endpoints)
            # The spec names the operation; traffic counters stay as they are.
            stmt = stmt.on_conflict_do_update(
                index_elements=["id"],
                set_={"name": sa.func.coalesce(stmt.excluded.name, t.endpoints.c.name), "from_spec": True},
            )
            await conn.execute(stmt, endpoint_rows)
            await conn.execute(t.endpoint_spec.insert(), spec_rows)
        return len({r["id"] for r in endpoint_rows} - existing)

    new_endpoints: int = await store.write(work)
    return ImportResult(api_id, spec.api, len(spec.operations), new_endpoints, spec.spec_format, etag)


async def spec_templates(store: Store, api: str | None = None) -> list[dict[str, Any]]:
    s = t.specs.c
    query = sa.select(s.api, s.base_path, s.etag, s.operations, s.imported_at).order_by(s.api)
    if api is not None:
        query = query.where(sa.or_(s.api == api, s.api_id == api))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {"api": r[0], "base_path": r[1], "etag": r[2], "operations": list(r[3]), "imported_at": r[4]} for r in rows
    ]


async def endpoint_ids(store: Store, api_id: str | None = None) -> list[str]:
    query = sa.select(t.endpoints.c.id).order_by(t.endpoints.c.id)
    if api_id is not None:
        query = query.where(t.endpoints.c.api_id == api_id)
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


# --- findings ------------------------------------------------------------------------------------


async def sync_findings(store: Store, evaluated: Sequence[tuple[EndpointFacts, list[Finding]]], now: datetime) -> None:
    """Open (or refresh) the findings that hold and resolve the open ones that no longer do, for
    exactly these endpoints."""
    f = t.findings.c
    for start in range(0, len(evaluated), _CHUNK):
        chunk = evaluated[start : start + _CHUNK]
        rows: list[dict[str, Any]] = [
            {
                "id": ids.finding_id(x.type, facts.id), "type": x.type, "severity": x.severity,
                "endpoint_id": facts.id, "api_id": facts.api_id, "api": facts.api, "method": facts.method,
                "path": facts.path, "evidence": x.evidence, "status": "open", "first_seen": now, "last_seen": now,
                "resolved_at": None,
            }
            for facts, found in chunk
            for x in found
        ]
        rows.sort(key=lambda r: str(r["id"]))  # one lock order for every collector
        holding = {str(r["id"]) for r in rows}
        endpoint_chunk = [facts.id for facts, _ in chunk]

        async def work(conn: AsyncConnection, rows: list[dict[str, Any]] = rows,
                       holding: set[str] = holding, endpoint_chunk: list[str] = endpoint_chunk) -> None:
            if rows:
                stmt = store.insert(t.findings)
                reopened = f.status == "resolved"
                stmt = stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={
                        "severity": stmt.excluded.severity,
                        "evidence": stmt.excluded.evidence,
                        "last_seen": stmt.excluded.last_seen,
                        "status": sa.literal("open"),
                        "resolved_at": sa.null(),
                        "first_seen": sa.case((reopened, stmt.excluded.first_seen), else_=f.first_seen),
                    },
                )
                await conn.execute(stmt, rows)
            stale = sa.and_(f.endpoint_id.in_(endpoint_chunk), f.status == "open")
            if holding:
                stale = sa.and_(stale, f.id.not_in(holding))
            await conn.execute(t.findings.update().where(stale).values(status="resolved", resolved_at=now))

        await store.write(work)


def _severity_rank() -> sa.ColumnElement[int]:
    return sa.case(*[(t.findings.c.severity == s, r) for s, r in SEVERITY_RANK.items()], else_=9)


async def list_findings(
    store: Store, filters: FindingFilter = FindingFilter(), limit: int = 100, cursor: str | None = None
) -> Page[FindingRow]:
    f = t.findings.c
    rank = _severity_rank()
    query = sa.select(t.findings, rank.label("rank")).order_by(rank, f.id).limit(limit + 1)
    for column, value in ((f.type, filters.type), (f.severity, filters.severity), (f.status, filters.status),
                          (f.endpoint_id, filters.endpoint_id)):
        if value is not None:
            query = query.where(column == value)
    if filters.api is not None:
        query = query.where(sa.or_(f.api == filters.api, f.api_id == filters.api))
    if cursor:
        rank_s, fid = decode_cursor(cursor, 2)
        if not rank_s.isdigit():
            raise InvalidCursor("cursor is not valid")
        query = query.where(sa.tuple_(rank, f.id) > sa.tuple_(sa.literal(int(rank_s)), sa.literal(fid)))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    items = [_finding(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([str(last["rank"]), last["id"]])
    return Page(items, next_cursor)


async def open_findings_by_type(store: Store, types: Iterable[str]) -> dict[str, list[FindingRow]]:
    f = t.findings.c
    wanted = list(types)
    query = sa.select(t.findings).where(f.status == "open", f.type.in_(wanted)).order_by(f.api, f.path, f.method)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    out: dict[str, list[FindingRow]] = {name: [] for name in wanted}
    for r in rows:
        out[r["type"]].append(_finding(r))
    return out


def _finding(r: sa.RowMapping) -> FindingRow:
    values = {k: r[k] for k in FindingRow.__dataclass_fields__}
    values["evidence"] = dict(values["evidence"] or {})
    return FindingRow(**values)


# --- the 30-day reset and retention ---------------------------------------------------------------


async def reset_stale_facts(store: Store, now: datetime) -> None:
    """Forget facts older than 30 days, so an endpoint that comes back starts from what it does now.

    Reads already ignore old facts (``recent_cutoff``); this makes the stored counters agree. Each
    statement re-checks its condition on the row it changes (PostgreSQL re-evaluates the WHERE after
    waiting for a concurrent ingest's row lock), so a fresh call is never reset.
    """
    cutoff = sa.literal(recent_cutoff(now), t.UTCDateTime())
    ep = t.endpoints.c

    async def work(conn: AsyncConnection) -> None:
        stale = sa.and_(ep.last_called.is_not(None), ep.last_called < cutoff)
        await conn.execute(
            t.endpoints.update().where(stale, sa.or_(ep.unauthenticated_success > 0, ep.authenticated_success > 0,
                                                     ep.unauthenticated_rejected > 0, ep.plaintext_requests > 0))
            .values(unauthenticated_success=0, authenticated_success=0, unauthenticated_rejected=0,
                    plaintext_requests=0)
        )
        await conn.execute(t.endpoints.update().where(ep.last_external < cutoff).values(last_external=None))
        await conn.execute(
            t.endpoint_auth.delete().where(
                t.endpoint_auth.c.endpoint_id.in_(sa.select(ep.id).where(stale))
            )
        )
        await conn.execute(t.endpoint_data_types.delete().where(t.endpoint_data_types.c.last_seen < cutoff))
        await conn.execute(t.endpoint_jwt.delete().where(t.endpoint_jwt.c.last_seen < cutoff))

    await store.write(work)


async def compact_windows(store: Store, now: datetime, retention_days: int) -> int:
    """Roll per-window rows older than ``retention_days`` into ``endpoint_hourly``; returns rows compacted."""
    cutoff = sa.literal(now - timedelta(days=retention_days), t.UTCDateTime())
    w = t.endpoint_windows.c

    async def work(conn: AsyncConnection) -> int:
        deleted = (
            await conn.execute(
                t.endpoint_windows.delete()
                .where(w.window_start < cutoff)
                .returning(w.endpoint_id, w.window_start, w.requests, w.latency_p95, w.latency_max,
                           w.request_size_max, w.response_size_max)
            )
        ).all()
        hourly: dict[tuple[str, datetime], dict[str, Any]] = {}
        for eid, began, requests, p95, lmax, qmax, smax in deleted:
            start = began if began.tzinfo else began.replace(tzinfo=UTC)
            hour = start.replace(minute=0, second=0, microsecond=0)
            row = hourly.setdefault(
                (eid, hour),
                {"endpoint_id": eid, "hour": hour, "requests": 0, "windows": 0, "latency_p95_max": 0.0,
                 "latency_max": 0.0, "request_size_max": 0.0, "response_size_max": 0.0},
            )
            row["requests"] += int(requests)
            row["windows"] += 1
            for name, value in (("latency_p95_max", p95), ("latency_max", lmax), ("request_size_max", qmax),
                                ("response_size_max", smax)):
                row[name] = max(row[name], float(value))
        if hourly:
            h = t.endpoint_hourly.c
            stmt = store.insert(t.endpoint_hourly)
            ex = stmt.excluded
            maxes = ("latency_p95_max", "latency_max", "request_size_max", "response_size_max")
            greatest = sa.func.greatest if store.dialect == "postgresql" else sa.func.max
            set_: dict[str, Any] = {"requests": h.requests + ex.requests, "windows": h.windows + ex.windows}
            set_.update({n: greatest(h[n], ex[n]) for n in maxes})
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["endpoint_id", "hour"], set_=set_),
                [hourly[k] for k in sorted(hourly)],
            )
        return len(deleted)

    compacted: int = await store.write(work)
    return compacted


__all__ = [
    "FindingFilter",
    "FindingRow",
    "ImportResult",
    "compact_windows",
    "endpoint_ids",
    "import_spec",
    "list_findings",
    "open_findings_by_type",
    "reset_stale_facts",
    "spec_templates",
    "sync_findings",
]


async def api_risk(store: Store, api_ids: Sequence[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Per API: the highest endpoint risk score, and how many endpoints carry each factor."""
    from collector import fields as F  # fields builds on this package's store module

    if not api_ids:
        return {}
    ep = t.endpoints.c

    def n(cond: sa.ColumnElement[bool], label: str) -> sa.Label[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0).label(label)

    factors = {
        "external_traffic": F.external(now),
        "unauthenticated": F.column("authentication", now) == "unauthenticated",
        "sensitive_data": F.sensitivity_rank(now) > 0,
        "plaintext_traffic": F.plaintext(now),
        "active_alerts": F.alert_count() > 0,
        "shadow_endpoint": F.shadow(),
    }
    query = (
        sa.select(ep.api_id, sa.func.coalesce(sa.func.max(F.risk_score(now)), 0).label("score"),
                  *[n(cond, name) for name, cond in factors.items()])
        .where(ep.api_id.in_(list(api_ids)))
        .group_by(ep.api_id)
    )
    out: dict[str, dict[str, Any]] = {}
    async with store.engine.connect() as conn:
        for row in (await conn.execute(query)).mappings():
            out[row["api_id"]] = {
                "score": int(row["score"]),
                "factors": [{"factor": name, "endpoints": int(row[name])} for name in factors if row[name]],
            }
    return out
