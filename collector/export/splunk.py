"""Splunk HTTP Event Collector payloads (pure): one ``{"time", "host", "source", "sourcetype",
"event"}`` object per record, batched by concatenation into one POST body (HEC's batch format).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from collector.export.records import ExportRecord, Source


def event_body(record: ExportRecord) -> dict[str, Any]:
    """The ``event`` field: the alert (or recommendation) as the collector's API shows it."""
    body: dict[str, Any] = {"event": record.event, "at": record.at.isoformat(), "by": record.by}
    if record.alert is not None:
        body["alert"] = record.alert
    else:
        body["recommendation"] = record.recommendation
    return body


def render(record: ExportRecord, source: Source, *, sourcetype: str = "apiward:alert",
           index: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": round(record.at.timestamp(), 3),
        "host": source.hostname,
        "source": source.product,
        "sourcetype": sourcetype,
        "event": event_body(record),
    }
    if index:
        out["index"] = index
    return out


def batch_body(events: Sequence[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(e, separators=(",", ":"), sort_keys=True) for e in events).encode()


def authorization(token: str) -> str:
    return f"Splunk {token}"


__all__ = ["authorization", "batch_body", "event_body", "render"]
