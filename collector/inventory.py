"""The inventory's facts, derived from stored rows (pure functions, no IO).

``collector.store.store.status_expr`` / ``auth_expr`` mirror ``endpoint_status`` / ``authentication``
in SQL so that filters and counts agree with the fields; the tests check both sides together.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from collector.store.store import ACTIVE_DAYS, ApiRow, DataTypeRow, EndpointFacts, SensorRow
from collector.timefmt import iso

LOCATIONS = ("path", "query", "header", "request_body", "response_body")
SENSITIVITY_LEVELS = ("none", "low", "medium", "high")

# Data type -> sensitivity, from the categories of the data types policy (policies/datatypes.yaml, the
# same file the sensor classifies with). A type the policy does not know (a sensor's custom type)
# counts as "medium".
# Credentials in request headers are how clients authenticate: they are inventoried (auth schemes,
# data classification) but they do not make an endpoint "carry sensitive data" - otherwise every
# authenticated endpoint would, and the sensitivity label would say nothing.
CREDENTIAL_LOCATIONS = frozenset({"header"})
CATEGORY_LEVELS: dict[str, str] = {
    "credential": "high",
    "financial": "high",
    "identity": "high",
    "health": "high",
    "personal": "medium",
    "network": "low",
}


@functools.cache
def sensitivity_levels() -> dict[str, str]:
    """Loaded on first use: reading and checking the policy takes a moment CLI readers don't need."""
    from sensor.classify import load_datatypes

    return {spec.id: CATEGORY_LEVELS.get(spec.category, "medium") for spec in load_datatypes()}


DEFAULT_LEVEL = "medium"

# Risk points per fact; the score is their sum, capped at 100. Kept small and explainable: every
# point in a score comes with the factor that earned it.
RISK_POINTS = {
    "external_traffic": 25,
    "unauthenticated": 30,
    "sensitive_data_high": 25,
    "sensitive_data_medium": 15,
    "sensitive_data_low": 5,
    "plaintext_traffic": 10,
    "active_alerts": 15,
    "shadow_endpoint": 15,
}


def derive_name(method: str, path: str) -> str:
    """``GET /users/{id}`` -> ``get-users-id``: a stable, URL-safe name when no spec names it."""
    words = [w.lower() for w in re.findall(r"[A-Za-z0-9]+", path)]
    return "-".join([method.lower(), *(words or ["root"])])


def endpoint_status(last_called: datetime | None, now: datetime) -> str:
    if last_called is None:
        return "awaiting_data"
    return "active" if last_called >= now - timedelta(days=ACTIVE_DAYS) else "inactive"


def authentication(unauthenticated_success: int, authenticated_success: int, unauthenticated_rejected: int) -> str:
    """``unauthenticated`` if any 2xx answered a request without credential; ``authenticated`` if
    credentialed requests got 2xx or anonymous ones got 401/403; else ``unknown``."""
    if unauthenticated_success > 0:
        return "unauthenticated"
    if authenticated_success > 0 or unauthenticated_rejected > 0:
        return "authenticated"
    return "unknown"


def data_classification(rows: Iterable[DataTypeRow]) -> dict[str, list[dict[str, Any]]]:
    """Per location, one entry per type with its JSON paths and the response status classes."""
    grouped: dict[str, dict[str, dict[str, Any]]] = {loc: {} for loc in LOCATIONS}
    for r in rows:
        entry = grouped.setdefault(r.location, {}).setdefault(
            r.type, {"type": r.type, "paths": set(), "status_classes": set(), "count": 0}
        )
        if r.path:
            entry["paths"].add(r.path)
        if r.status_class:
            entry["status_classes"].add(r.status_class)
        entry["count"] += r.count
    return {
        loc: [
            {**e, "paths": sorted(e["paths"]), "status_classes": sorted(e["status_classes"])}
            for _, e in sorted(types.items())
        ]
        for loc, types in grouped.items()
    }


def sensitivity(types: Iterable[str], mapping: Mapping[str, str] | None = None) -> str:
    """The highest level among the data types seen (``none`` when there are none)."""
    mapping = sensitivity_levels() if mapping is None else mapping
    best = 0
    for type_ in types:
        level = mapping.get(type_, DEFAULT_LEVEL)
        best = max(best, SENSITIVITY_LEVELS.index(level) if level in SENSITIVITY_LEVELS else 2)
    return SENSITIVITY_LEVELS[best]


def risk(
    *,
    external: bool,
    unauthenticated: bool,
    sensitivity_level: str,
    plaintext: bool,
    active_alerts: int,
    shadow: bool = False,
) -> dict[str, Any]:
    factors: list[dict[str, Any]] = []

    def add(factor: str) -> None:
        factors.append({"factor": factor, "points": RISK_POINTS[factor]})

    if external:
        add("external_traffic")
    if unauthenticated:
        add("unauthenticated")
    if sensitivity_level != "none":
        add(f"sensitive_data_{sensitivity_level}")
    if plaintext:
        add("plaintext_traffic")
    if active_alerts > 0:
        add("active_alerts")
    if shadow:
        add("shadow_endpoint")
    return {"score": min(100, sum(f["points"] for f in factors)), "factors": factors}


def is_shadow(f: EndpointFacts) -> bool:
    """Called, in an API that has an imported spec, and not declared there."""
    return f.api_has_spec and not f.in_spec and f.last_called is not None


@dataclass(frozen=True, slots=True)
class Derived:
    """The fields every consumer (views, findings, recommendations) derives the same way."""

    status: str
    authentication: str
    external: bool
    sensitivity: str
    plaintext: bool
    shadow: bool
    risk: dict[str, Any]


def derive(f: EndpointFacts, now: datetime) -> Derived:
    """Derived facts with the 30-day reset: an endpoint not called for 30 days is back to unknown
    authentication and no exposure (its data types already come filtered to 30 days by the store);
    the SQL mirrors in ``collector.store.store`` and ``collector.fields`` agree with this."""
    status = endpoint_status(f.last_called, now)
    recent = status == "active"
    auth = (
        authentication(f.unauthenticated_success, f.authenticated_success, f.unauthenticated_rejected)
        if recent
        else "unknown"
    )
    external = f.last_external is not None and f.last_external >= now - timedelta(days=ACTIVE_DAYS)
    level = sensitivity(d.type for d in f.data_types if d.location not in CREDENTIAL_LOCATIONS)
    plaintext = recent and f.plaintext_requests > 0
    shadow = is_shadow(f)
    score = risk(
        external=external,
        unauthenticated=auth == "unauthenticated",
        sensitivity_level=level,
        plaintext=plaintext,
        active_alerts=f.active_alerts,
        shadow=shadow,
    )
    return Derived(status, auth, external, level, plaintext, shadow, score)


def endpoint_view(f: EndpointFacts, now: datetime) -> dict[str, Any]:
    """One row of the inventory: the endpoint fields of DESIGN.md section 5."""
    d = derive(f, now)
    status, auth, level = d.status, d.authentication, d.sensitivity
    return {
        "id": f.id,
        "api": f.api,
        "api_id": f.api_id,
        "name": f.name or derive_name(f.method, f.path),
        "from_spec": f.from_spec,
        "method": f.method,
        "path": f.path,
        "status": status,
        "last_called": iso(f.last_called),
        "inactive_30d": status != "active",
        "authentication": auth,
        "auth_schemes": dict(sorted(f.auth_schemes.items())) if status == "active" else {},
        # Requests per JWT fact in the last 30 days (the store filters them): "jwt", "alg_none", ...
        "token_facts": dict(sorted(f.jwt_facts.items())),
        "external_traffic_observed": iso(f.last_external) if d.external else None,
        "data_classification": data_classification(f.data_types),
        "sensitivity": level,
        "shadow": d.shadow,
        "deprecated": f.deprecated,
        "risk": d.risk,
        "findings_count": f.findings_count,
        "alerts_count": f.active_alerts,
        "first_seen": iso(f.first_seen),
        "requests_30d": f.requests_30d,
    }


def api_view(row: ApiRow, risk_summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An API collection; ``risk_summary`` is its highest endpoint score and the factors' endpoint counts."""
    return {
        "risk": dict(risk_summary or {"score": 0, "factors": []}),
        "id": row.id,
        "name": row.name,
        "first_seen": iso(row.first_seen),
        "last_seen": iso(row.last_seen),
        "counts": dict(row.counts),
    }


def sensor_view(row: SensorRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "mode": row.mode,
        "started_at": iso(row.started_at),
        "first_seen": iso(row.first_seen),
        "last_batch_at": iso(row.last_batch_at),
        "last_seq": row.last_seq,
        "batches": row.batches,
        "stats": {
            "exchanges": row.exchanges,
            "analysis_errors": row.analysis_errors,
            "dropped_batches": row.dropped_batches,
            "dropped_summaries": row.dropped_summaries,
            "dropped_requests": row.dropped_requests,
            "spooled_batches": row.spooled_batches,
        },
    }


def inventory_view(counts: Mapping[str, int], sensors: Iterable[SensorRow], now: datetime) -> dict[str, Any]:
    sensor_items = [sensor_view(s) for s in sensors]
    return {
        "generated_at": iso(now),
        "counts": {
            name: int(counts.get(name, 0))
            for name in (
                "apis", "endpoints", "active", "inactive", "awaiting_data",
                "unauthenticated", "external", "with_sensitive_data",
            )
        },
        "sensors": sensor_items,
        # Data loss must be visible at a glance, not only per sensor.
        "dropped": {
            name: sum(s["stats"][name] for s in sensor_items)
            for name in ("dropped_batches", "dropped_summaries", "dropped_requests")
        },
    }
