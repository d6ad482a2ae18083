"""Builders for wire-contract batches used across the collector tests."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sensor.events import (
    AlertClient,
    AlertEndpoint,
    AlertEvent,
    Batch,
    DataTypeSeen,
    Distribution,
    EndpointSummary,
    ParamSeen,
    SensorInfo,
    SensorStats,
)

_seq = itertools.count(1)
NOW = datetime.now(UTC).replace(microsecond=0)


def summary(
    path: str = "/users/{id}",
    method: str = "GET",
    api: str = "shop",
    requests: int = 10,
    at: datetime | None = None,
    **fields: Any,
) -> EndpointSummary:
    at = at or NOW - timedelta(minutes=5)
    values: dict[str, Any] = {
        "status_classes": {"2xx": requests},
        "auth_schemes": {"jwt": requests},
        "authenticated_success": requests,
        "request_size": Distribution(count=requests, p50=100, p95=200, max=300),
        "response_size": Distribution(count=requests, p50=1000, p95=2000, max=3000),
        "latency_ms": Distribution(count=requests, p50=5, p95=20, max=40),
    }
    values.update(fields)
    return EndpointSummary(
        api=api,
        method=method,
        path=path,
        window_start=at - timedelta(seconds=60),
        window_end=at,
        first_seen=at - timedelta(seconds=59),
        last_seen=at,
        requests=requests,
        **values,
    )


def alert(
    type_: str = "SIG_SQLI",
    *,
    path: str = "/users/{id}",
    ip: str | None = "203.0.113.9",
    principal: str | None = None,
    count: int = 1,
    severity: str = "high",
    at: datetime | None = None,
) -> AlertEvent:
    at = at or NOW - timedelta(minutes=5)
    return AlertEvent(
        type=type_,
        title=f"{type_} on {path}",
        severity=severity,
        endpoint=AlertEndpoint(api="shop", method="GET", path=path),
        client=AlertClient(ip=ip, principal=principal),
        first_seen=at - timedelta(seconds=30),
        last_seen=at,
        count=count,
        evidence={"param": "id", "excerpt": "1' OR '1'='1"},
        rule_ids=["942100"],
    )


def batch(
    summaries: list[EndpointSummary] | None = None,
    alerts: list[AlertEvent] | None = None,
    *,
    sensor_id: str = "sensor-1",
    stats: SensorStats | None = None,
    batch_id: str | None = None,
    seq: int | None = None,
) -> Batch:
    return Batch(
        batch_id=batch_id or uuid.uuid4().hex,
        sensor=SensorInfo(
            id=sensor_id, name=f"{sensor_id}-name", version="0.1.0", mode="inline", started_at=NOW - timedelta(hours=1)
        ),
        created_at=NOW,
        seq=next(_seq) if seq is None else seq,
        summaries=summaries if summaries is not None else [summary()],
        alerts=alerts or [],
        stats=stats or SensorStats(exchanges=10),
    )


__all__ = ["NOW", "DataTypeSeen", "ParamSeen", "alert", "batch", "summary"]
