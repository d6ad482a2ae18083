"""Turn one ``Batch`` into the rows each table receives (pure, no IO).

Rows are aggregated per primary key first: a single upsert statement may not touch the same row
twice, and summing within the batch is safe (it is the batch's own data, not a read of stored state).
Each list is sorted by key so that concurrent transactions lock rows in the same order, which keeps
PostgreSQL deadlocks out of the common path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collector.store import ids
from sensor.behaviour.sketches import merge_registers
from sensor.events import AlertEvent, Batch, Distribution, EndpointSummary

Row = dict[str, Any]
Rows = dict[tuple[Any, ...], Row]  # rows of one table by primary key
_TABLES = (
    "apis", "endpoints", "daily", "auth", "status", "params", "data_types", "jwt", "windows", "sketches", "alerts",
)
# The JWT facts this collector stores (sensor.summary.JWT_FACTS). Others, from a newer sensor, are
# dropped: the table stays bounded by this list and every name fits its column.
JWT_FACTS = frozenset(
    {"jwt", "unsigned", "alg_none", "unsigned_accepted", "symmetric", "no_exp", "long_lifetime", "expired"}
)


def utc(value: datetime) -> datetime:
    """Naive timestamps from a sensor are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def _add(rows: Rows, key: tuple[Any, ...], values: Row, counters: tuple[str, ...]) -> Row:
    """Insert ``values`` under ``key`` or add its ``counters`` to the row already there."""
    row = rows.get(key)
    if row is None:
        rows[key] = dict(values)
        return rows[key]
    for name in counters:
        row[name] += values[name]
    return row


@dataclass(slots=True)
class BatchRows:
    batch: Row
    sensor: Row
    apis: list[Row] = field(default_factory=list)
    endpoints: list[Row] = field(default_factory=list)
    daily: list[Row] = field(default_factory=list)
    auth: list[Row] = field(default_factory=list)
    status: list[Row] = field(default_factory=list)
    params: list[Row] = field(default_factory=list)
    data_types: list[Row] = field(default_factory=list)
    jwt: list[Row] = field(default_factory=list)
    windows: list[Row] = field(default_factory=list)
    sketches: list[Row] = field(default_factory=list)  # param_sketches (fleet view)
    alerts: list[Row] = field(default_factory=list)


_ENDPOINT_COUNTERS = (
    "requests",
    "unauthenticated_success",
    "authenticated_success",
    "unauthenticated_rejected",
    "plaintext_requests",
    "external_requests",
)


def _dist(prefix: str, d: Distribution) -> Row:
    return {f"{prefix}_p50": d.p50, f"{prefix}_p95": d.p95, f"{prefix}_max": d.max}


def build_rows(batch: Batch, received_at: datetime) -> BatchRows:
    received_at = utc(received_at)
    info, stats = batch.sensor, batch.stats
    out = BatchRows(
        batch={
            "batch_id": batch.batch_id,
            "sensor_id": info.id,
            "seq": batch.seq,
            "created_at": utc(batch.created_at),
            "received_at": received_at,
            "summaries": len(batch.summaries),
            "alerts": len(batch.alerts),
        },
        sensor={
            "id": info.id,
            "name": info.name,
            "version": info.version,
            "mode": info.mode,
            "started_at": utc(info.started_at),
            "first_seen": received_at,
            "last_batch_at": received_at,
            "last_seq": batch.seq,
            "batches": 1,
            "exchanges": stats.exchanges,
            "analysis_errors": stats.analysis_errors,
            "dropped_batches": stats.dropped_batches,
            "dropped_summaries": stats.dropped_summaries,
            "dropped_requests": stats.dropped_requests,
            "spooled_batches": stats.spooled_batches,
        },
    )
    acc: dict[str, Rows] = {name: {} for name in _TABLES}
    for s in batch.summaries:
        _add_summary(s, info.id, acc, received_at)
    for a in batch.alerts:
        _add_alert(a, acc["alerts"])

    for name, rows in acc.items():
        setattr(out, name, [rows[k] for k in sorted(rows)])
    return out


def _add_summary(s: EndpointSummary, sensor_id: str, acc: dict[str, Rows], received_at: datetime) -> None:
    apis, eps, daily, auth = acc["apis"], acc["endpoints"], acc["daily"], acc["auth"]
    status, params, dtypes, windows = acc["status"], acc["params"], acc["data_types"], acc["windows"]
    method = s.method.upper()
    aid, eid = ids.api_id(s.api), ids.endpoint_id(s.api, method, s.path)
    first, last = utc(s.first_seen), utc(s.last_seen)
    last_external = utc(s.last_external) if s.last_external and s.external_requests else None
    api = _add(apis, (aid,), {"id": aid, "name": s.api, "first_seen": first, "last_seen": last}, ())
    api["first_seen"], api["last_seen"] = min(api["first_seen"], first), max(api["last_seen"], last)

    values: Row = {
        "id": eid,
        "api_id": aid,
        "api": s.api,
        "method": method,
        "path": s.path,
        "name": s.name,
        "from_spec": s.from_spec,
        "first_seen": first,
        "last_called": last if s.requests > 0 else None,
        "last_external": last_external,
    }
    values.update({name: getattr(s, name) for name in _ENDPOINT_COUNTERS})
    ep = eps.get((eid,))
    if ep is None:
        eps[(eid,)] = values
    else:
        for name in _ENDPOINT_COUNTERS:
            ep[name] += values[name]
        ep["first_seen"] = _earliest(ep["first_seen"], first)
        ep["last_called"] = _latest(ep["last_called"], values["last_called"])
        ep["last_external"] = _latest(ep["last_external"], last_external)
        ep["name"] = s.name or ep["name"]
        ep["from_spec"] = ep["from_spec"] or s.from_spec

    day = utc(s.window_start).date()
    _add(
        daily,
        (eid, day),
        {"endpoint_id": eid, "day": day, "requests": s.requests, "external_requests": s.external_requests},
        ("requests", "external_requests"),
    )
    for scheme, n in s.auth_schemes.items():
        _add(auth, (eid, scheme), {"endpoint_id": eid, "scheme": scheme, "count": n}, ("count",))
    for cls, n in s.status_classes.items():
        _add(status, (eid, cls), {"endpoint_id": eid, "status_class": cls, "count": n}, ("count",))
    for p in s.params:
        row = _add(
            params,
            (eid, p.location, p.name),
            {"endpoint_id": eid, "location": p.location, "name": p.name, "count": p.count,
             "first_seen": first, "last_seen": last},
            ("count",),
        )
        row["first_seen"], row["last_seen"] = min(row["first_seen"], first), max(row["last_seen"], last)
    for d in s.data_types:
        row = _add(
            dtypes,
            (eid, d.type, d.location, d.path, d.status_class),
            {"endpoint_id": eid, "type": d.type, "location": d.location, "path": d.path,
             "status_class": d.status_class, "count": d.count, "first_seen": first, "last_seen": last},
            ("count",),
        )
        row["first_seen"], row["last_seen"] = min(row["first_seen"], first), max(row["last_seen"], last)
    for fact, n in s.jwt_facts.items():
        if fact not in JWT_FACTS or n <= 0:
            continue
        row = _add(
            acc["jwt"],
            (eid, fact),
            {"endpoint_id": eid, "fact": fact, "count": n, "first_seen": first, "last_seen": last},
            ("count",),
        )
        row["first_seen"], row["last_seen"] = min(row["first_seen"], first), max(row["last_seen"], last)

    wstart = utc(s.window_start)
    window: Row = {
        "endpoint_id": eid,
        "sensor_id": sensor_id,
        "window_start": wstart,
        "window_end": utc(s.window_end),
        "requests": s.requests,
        "status_classes": dict(sorted(s.status_classes.items())),
        **_dist("latency", s.latency_ms),
        **_dist("request_size", s.request_size),
        **_dist("response_size", s.response_size),
    }
    prev = windows.get((eid, sensor_id, wstart))
    if prev is None:
        windows[(eid, sensor_id, wstart)] = window
    else:
        # Percentiles cannot be merged exactly; keep the larger sample's and the max of maxima.
        keep = window if s.requests > prev["requests"] else prev
        merged = dict(keep)
        merged["requests"] = prev["requests"] + s.requests
        for name in ("latency_max", "request_size_max", "response_size_max"):
            merged[name] = max(prev[name], window[name])
        classes = dict(prev["status_classes"])
        for cls, n in s.status_classes.items():
            classes[cls] = classes.get(cls, 0) + n
        merged["status_classes"] = dict(sorted(classes.items()))
        windows[(eid, sensor_id, wstart)] = merged

    sketches = acc["sketches"]
    for sk in s.param_sketches:
        start = utc(sk.window_start)
        key = (eid, sensor_id, sk.location, sk.name, start)
        found = sketches.get(key)
        if found is not None and found["hash_id"] == sk.hash_id:
            found["registers"] = merge_registers([found["registers"], sk.registers])
            continue
        sketches[key] = {
            "endpoint_id": eid, "sensor_id": sensor_id, "location": sk.location, "name": sk.name,
            "window_start": start, "window_seconds": sk.window_seconds, "hash_id": sk.hash_id,
            "registers": bytes(sk.registers), "updated_at": received_at,
        }  # fmt: skip


def alert_row(a: AlertEvent) -> Row:
    """An alert event as a row of ``alerts`` (the grouping id is set by ``alert_store``)."""
    method = a.endpoint.method.upper()
    ip, principal = a.client.ip or "", a.client.principal or ""
    aid = ids.alert_id(a.type, a.endpoint.api, method, a.endpoint.path, client_ip=ip, principal=principal)
    first, last = utc(a.first_seen), utc(a.last_seen)
    values: Row = {
        "id": aid,
        "type": a.type,
        "title": a.title,
        "severity": a.severity,
        "endpoint_id": ids.endpoint_id(a.endpoint.api, method, a.endpoint.path),
        "api": a.endpoint.api,
        "method": method,
        "path": a.endpoint.path,
        "client_ip": ip,
        "principal": principal,
        "count": a.count,
        "first_seen": first,
        "last_seen": last,
        "evidence": a.evidence,
        "rule_ids": list(a.rule_ids),
        "status": "active",
        "status_by": None,
        "status_at": None,
    }
    return values


def _add_alert(a: AlertEvent, alerts: Rows) -> None:
    values = alert_row(a)
    aid, first, last = values["id"], values["first_seen"], values["last_seen"]
    row = alerts.get((aid,))
    if row is None:
        alerts[(aid,)] = values
        return
    row["count"] += a.count
    row["first_seen"] = min(row["first_seen"], first)
    if last >= row["last_seen"]:  # the latest sighting's words and evidence win
        row.update(title=a.title, severity=a.severity, evidence=a.evidence, rule_ids=list(a.rule_ids))
        row["last_seen"] = last
