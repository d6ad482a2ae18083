"""Generic webhook bodies and their signature (pure).

Headers sent with each POST:
  ``X-Apiward-Event``: the event (``alert.created``, ...)
  ``X-Apiward-Delivery``: the outbox row id (the same on every retry of that delivery)
  ``X-Apiward-Timestamp``: Unix seconds when this attempt was sent; also ``sent_at`` in the body
  ``X-Apiward-Signature``: ``sha256=`` + hex HMAC-SHA256 of the raw body with the shared secret.
The body carries ``sent_at`` so the signature covers the timestamp: a receiver verifies the HMAC over
the raw bytes (constant-time compare), then rejects bodies whose ``sent_at`` is older than its
tolerance (e.g. 5 minutes) to refuse replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from collector.export.records import ExportRecord
from collector.export.splunk import event_body

SIGNATURE_HEADER = "X-Apiward-Signature"
TIMESTAMP_HEADER = "X-Apiward-Timestamp"
EVENT_HEADER = "X-Apiward-Event"
DELIVERY_HEADER = "X-Apiward-Delivery"


def body(record: ExportRecord, sent_at: int) -> bytes:
    payload: dict[str, Any] = {**event_body(record), "sent_at": sent_at}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: bytes, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()


def verify(secret: bytes, raw: bytes, header: str) -> bool:
    """What a receiver does (used by the tests, and documented as the reference)."""
    return hmac.compare_digest(signature(secret, raw), header)


def headers(record: ExportRecord, secret: bytes, raw: bytes, sent_at: int, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: record.event,
        DELIVERY_HEADER: delivery,
        TIMESTAMP_HEADER: str(sent_at),
        SIGNATURE_HEADER: signature(secret, raw),
    }


__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "body", "headers",
           "signature", "verify"]
