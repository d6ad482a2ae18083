"""Endpoint attributes as SQL expressions, for the explorer's filters.

Each one mirrors the Python derivation in ``collector.inventory.derive`` (tests check that both sides
agree), so a filter selects exactly the endpoints whose views show the matching value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collector.inventory import CREDENTIAL_LOCATIONS, RISK_POINTS, SENSITIVITY_LEVELS, sensitivity_levels
from collector.store import schema as t
from collector.store.store import auth_expr, external_expr, recent_cutoff, status_expr

ep = t.endpoints.c


@dataclass(frozen=True, slots=True)
class Field:
    kind: str  # "str" | "enum" | "bool" | "number" | "set"
    doc: str
    choices: tuple[str, ...] = ()


FIELDS: dict[str, Field] = {
    "api": Field("str", "API collection name"),
    "method": Field("str", "HTTP method (upper case)"),
    "path": Field("str", "path template"),
    "name": Field("str", "operation name from the spec (empty when none)"),
    "status": Field("enum", "activity", ("active", "inactive", "awaiting_data")),
    "authentication": Field("enum", "observed authentication", ("authenticated", "unauthenticated", "unknown")),
    "external": Field("bool", "internet traffic in the last 30 days"),
    "data_type": Field("set", "sensitive data types seen in the last 30 days (credit_card, iban, ...)"),
    "sensitivity": Field("enum", "highest sensitivity of its data (ordered)", SENSITIVITY_LEVELS),
    "plaintext": Field("bool", "plaintext HTTP in the last 30 days"),
    "api_plaintext": Field("bool", "any endpoint of the same API saw plaintext HTTP in the last 30 days"),
    "shadow": Field("bool", "called, but not in the API's imported spec"),
    "deprecated": Field("bool", "deprecated in the spec"),
    "risk": Field("number", "risk score 0-100"),
    "alerts": Field("number", "active alerts"),
    "high_alerts": Field("number", "active high-severity alerts"),
    "findings": Field("number", "open findings"),
}


def _recent(now: datetime) -> sa.BindParameter[datetime]:
    return sa.literal(recent_cutoff(now), t.UTCDateTime())


def data_types_exist(now: datetime, *conds: sa.ColumnElement[bool]) -> sa.Exists:
    dt = t.endpoint_data_types.c
    return sa.exists().where(dt.endpoint_id == ep.id, dt.last_seen >= _recent(now), *conds)


def sensitivity_rank(now: datetime) -> sa.ColumnElement[int]:
    """0 none, 1 low, 2 medium, 3 high; types not in the mapping count as medium, as in Python."""
    dt = t.endpoint_data_types.c
    levels = sensitivity_levels()
    high = [k for k, v in levels.items() if v == "high"]
    low = [k for k, v in levels.items() if v == "low"]
    payload = dt.location.not_in(sorted(CREDENTIAL_LOCATIONS))
    return sa.case(
        (data_types_exist(now, payload, dt.type.in_(high)), 3),
        (data_types_exist(now, payload, dt.type.not_in(low)), 2),
        (data_types_exist(now, payload), 1),
        else_=0,
    )


def active(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(ep.last_called.is_not(None), ep.last_called >= _recent(now))


def external(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(ep.last_external.is_not(None), external_expr(now))


def plaintext(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(active(now), ep.plaintext_requests > 0)


def api_plaintext(now: datetime) -> sa.ColumnElement[bool]:
    other = t.endpoints.alias("other")
    return sa.exists().where(
        other.c.api_id == ep.api_id,
        other.c.plaintext_requests > 0,
        other.c.last_called >= _recent(now),
    )


def shadow() -> sa.ColumnElement[bool]:
    return sa.and_(
        ep.last_called.is_not(None),
        sa.exists().where(t.specs.c.api_id == ep.api_id),
        ~sa.exists().where(t.endpoint_spec.c.endpoint_id == ep.id),
    )


def deprecated() -> sa.ColumnElement[bool]:
    es = t.endpoint_spec.c
    return sa.exists().where(es.endpoint_id == ep.id, es.deprecated.is_(True))


def alert_count(high_only: bool = False) -> sa.ScalarSelect[int]:
    al = t.alerts.c
    conds = [al.endpoint_id == ep.id, al.status == "active"]
    if high_only:
        conds.append(al.severity == "high")
    return sa.select(sa.func.count()).where(*conds).scalar_subquery()


def finding_count() -> sa.ScalarSelect[int]:
    fi = t.findings.c
    return sa.select(sa.func.count()).where(fi.endpoint_id == ep.id, fi.status == "open").scalar_subquery()


def risk_score(now: datetime) -> sa.ColumnElement[int]:
    p = RISK_POINTS

    def pts(cond: sa.ColumnElement[bool], points: int) -> sa.ColumnElement[int]:
        return sa.case((cond, points), else_=0)

    rank = sensitivity_rank(now)
    total = (
        pts(external(now), p["external_traffic"])
        + pts(auth_expr(now) == "unauthenticated", p["unauthenticated"])
        + sa.case(
            (rank == 3, p["sensitive_data_high"]),
            (rank == 2, p["sensitive_data_medium"]),
            (rank == 1, p["sensitive_data_low"]),
            else_=0,
        )
        + pts(plaintext(now), p["plaintext_traffic"])
        + pts(alert_count() > 0, p["active_alerts"])
        + pts(shadow(), p["shadow_endpoint"])
    )
    return sa.case((total > 100, 100), else_=total)


def column(name: str, now: datetime) -> sa.ColumnElement[Any]:
    """The SQL value of a scalar field (not ``data_type``, which is a set)."""
    exprs: dict[str, sa.ColumnElement[Any]] = {
        "api": ep.api,
        "method": ep.method,
        "path": ep.path,
        "name": sa.func.coalesce(ep.name, ""),
        "status": status_expr(now),
        "authentication": auth_expr(now),
        "external": external(now),
        "sensitivity": sensitivity_rank(now),
        "plaintext": plaintext(now),
        "api_plaintext": api_plaintext(now),
        "shadow": shadow(),
        "deprecated": deprecated(),
        "risk": risk_score(now),
        "alerts": alert_count(),
        "high_alerts": alert_count(high_only=True),
        "findings": finding_count(),
    }
    return exprs[name]


__all__ = ["FIELDS", "Field", "column", "data_types_exist"]
