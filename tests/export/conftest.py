"""Export test fixtures: the collector's stores (SQLite and PostgreSQL) and fixed sample records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collector.alerts import alert_view
from collector.export.records import ExportRecord, Source
from collector.store.store import AlertRow
from tests.collector.conftest import db_url, pg_database, settings, sqlite_store, store  # noqa: F401 (fixtures)

AT = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
SOURCE = Source(vendor="apiward", product="apiward", version="0.1.0", hostname="collector-1")


def sample_alert(**changes: object) -> AlertRow:
    values: dict[str, object] = {
        "id": "5f1d2c3b4a5968778695a4b3",
        "type": "SIG_SQLI",
        "title": "SQL injection | tautology = true \\ on\nline two",
        "severity": "high",
        "endpoint_id": "0a1b2c3d4e5f60718293a4b5",
        "api": "shop",
        "method": "GET",
        "path": "/users/{id}",
        "client_ip": "203.0.113.9",
        "principal": "p-7c1e",
        "count": 12,
        "first_seen": datetime(2026, 3, 14, 15, 0, 0, tzinfo=UTC),
        "last_seen": datetime(2026, 3, 14, 15, 9, 0, tzinfo=UTC),
        "evidence": {"param": "id", "excerpt": "1' OR '1'='1 | x=y \\ z\r\nnext", "location": "query"},
        "rule_ids": ["SQLI-002", "SQLI-003"],
        "status": "active",
        "status_by": None,
        "status_at": None,
    }
    values.update(changes)
    return AlertRow(**values)  # type: ignore[arg-type]


def alert_record(event: str = "alert.created", **changes: object) -> ExportRecord:
    return ExportRecord(event=event, at=AT, by="apiward", alert=alert_view(sample_alert(**changes)))


def recommendation_record() -> ExportRecord:
    return ExportRecord(
        event="recommendation.unhealthy",
        at=AT,
        by="apiward",
        recommendation={
            "id": "authenticate-endpoints",
            "title": "API endpoints should be authenticated",
            "severity": "high",
            "description": "Endpoints answered requests without credentials.",
            "remediation": ["Require authentication at the gateway.", "Re-check after a day of traffic."],
            "finding_types": ["unauthenticated_endpoint"],
            "status": "unhealthy",
            "affected_count": 2,
            "affected_endpoints": [
                {"id": "e1", "api": "shop", "method": "GET", "path": "/users/{id}"},
                {"id": "e2", "api": "shop", "method": "POST", "path": "/orders"},
            ],
        },
    )


@pytest.fixture
def source() -> Source:
    return SOURCE
