"""What one export event is, independent of the format it is rendered in.

Outbox rows carry a snapshot of the alert (or recommendation) taken in the transaction that changed
it, so a SIEM receives the state that caused the event even when it is delivered hours later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collector.alerts import alert_view
from collector.store.store import AlertRow

SEVERITY_RANK = {"informational": 0, "low": 1, "medium": 2, "high": 3}


@dataclass(frozen=True, slots=True)
class Source:
    """Who sends: product identity and the host name put in syslog headers and records."""

    vendor: str = "apiward"
    product: str = "apiward"
    version: str = "0.1.0"
    hostname: str = "apiward-collector"


@dataclass(frozen=True, slots=True)
class ExportRecord:
    event: str  # alert.created | alert.updated | alert.reopened | alert.status_changed | alert.snapshot | ...
    at: datetime  # when the change happened (or the snapshot was taken)
    by: str  # who made the change: a token name, or "apiward"
    alert: dict[str, Any] | None = None  # collector.alerts.alert_view
    recommendation: dict[str, Any] | None = None  # collector.recommendations.evaluate item

    @property
    def subject_id(self) -> str:
        if self.alert is not None:
            return str(self.alert["id"])
        assert self.recommendation is not None
        return str(self.recommendation["id"])

    @property
    def severity(self) -> str:
        subject = self.alert if self.alert is not None else self.recommendation
        assert subject is not None
        return str(subject["severity"])


def alert_row(data: dict[str, Any]) -> AlertRow:
    values = dict(data)
    for name in ("first_seen", "last_seen", "status_at"):
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    return AlertRow(**values)


def from_payload(payload: dict[str, Any]) -> ExportRecord:
    """An outbox payload (``collector.store.alert_store.alert_payload`` and friends) as a record."""
    alert = alert_view(alert_row(payload["alert"])) if payload.get("alert") is not None else None
    return ExportRecord(
        event=str(payload["event"]),
        at=datetime.fromisoformat(payload["at"]),
        by=str(payload.get("by") or "apiward"),
        alert=alert,
        recommendation=payload.get("recommendation"),
    )


def epoch_ms(value: str | datetime | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(value.timestamp() * 1000)


__all__ = ["SEVERITY_RANK", "ExportRecord", "Source", "alert_row", "epoch_ms", "from_payload"]
