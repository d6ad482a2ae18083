"""The wire contract between sensor and collector (versioned).

A sensor ships *batches*. A batch carries per-endpoint window summaries and alerts, never raw
payloads: only types, paths, counts, hashes and redacted excerpts. The collector decodes a batch with
``decode_batch`` which validates the shape strictly (unknown fields are rejected so that a contract
drift is loud, not silent).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

SCHEMA_VERSION = 1


class Distribution(msgspec.Struct, forbid_unknown_fields=True):
    """A summary of a sample of numbers (bytes or milliseconds)."""

    count: int = 0
    p50: float = 0.0
    p95: float = 0.0
    max: float = 0.0


class ParamSeen(msgspec.Struct, forbid_unknown_fields=True):
    """A parameter name observed on an endpoint (never its value)."""

    location: str  # "query" | "body" | "path" | "header" | "cookie"
    name: str
    count: int = 1


class DataTypeSeen(msgspec.Struct, forbid_unknown_fields=True):
    """A sensitive data type found in one location of an endpoint's traffic."""

    type: str  # e.g. "credit_card", "email"
    location: str  # "path" | "query" | "header" | "request_body" | "response_body"
    path: str = ""  # JSON path template, e.g. "$.users[*].card_number"
    status_class: str = ""  # response status class that carried it ("2xx"), "" for requests
    count: int = 1


# HyperLogLog sketches of parameter values (sensor.behaviour.sketches.Hll(10)): 2**10 one-byte
# registers, each a rank between 0 and 64 - 10 + 1.
SKETCH_REGISTERS = 1024
SKETCH_MAX_RANK = 55
MAX_SKETCHES_PER_SUMMARY = 32  # the sensor ships at most this many per summary; the collector refuses more


class ParamSketch(msgspec.Struct, forbid_unknown_fields=True):
    """Distinct values of one parameter of an endpoint across all clients, as HyperLogLog registers.

    Only hashes went into the registers (never a value). ``window_start`` is aligned on the epoch clock
    (``floor(t / window_seconds) * window_seconds``) so every sensor's sketch of a window covers the same
    interval; the registers are cumulative for that window, so shipping them again is harmless (the
    collector keeps the register-wise max). Sketches merge only with sketches of the same ``hash_id``
    (a fingerprint of the value-hash key, shared by replicas configured with the same principal secret).
    """

    location: str  # "path" | "query" | "body"
    name: str
    window_start: datetime
    window_seconds: float
    registers: bytes  # SKETCH_REGISTERS bytes; base64 in JSON
    hash_id: str = ""


class EndpointSummary(msgspec.Struct, forbid_unknown_fields=True):
    """What one sensor learned about one endpoint during one window."""

    api: str
    method: str
    path: str  # the endpoint template, e.g. "/users/{id}"
    window_start: datetime
    window_end: datetime
    first_seen: datetime
    last_seen: datetime
    requests: int
    name: str | None = None  # operation name when the template came from a spec
    from_spec: bool = False
    status_classes: dict[str, int] = msgspec.field(default_factory=dict)  # "2xx" -> n
    auth_schemes: dict[str, int] = msgspec.field(default_factory=dict)  # "jwt" -> n, "none" -> n
    # Backend answers that tell whether it enforces authentication:
    unauthenticated_success: int = 0  # 2xx to requests that carried no credential
    authenticated_success: int = 0  # 2xx to requests that carried a credential
    unauthenticated_rejected: int = 0  # 401/403 to requests that carried no credential
    external_requests: int = 0
    last_external: datetime | None = None
    plaintext_requests: int = 0
    request_size: Distribution = msgspec.field(default_factory=Distribution)
    response_size: Distribution = msgspec.field(default_factory=Distribution)
    latency_ms: Distribution = msgspec.field(default_factory=Distribution)
    params: list[ParamSeen] = msgspec.field(default_factory=list)
    data_types: list[DataTypeSeen] = msgspec.field(default_factory=list)
    distinct_clients: int = 0
    distinct_clients_capped: bool = False
    # Requests per JWT fact (sensor.summary.JWT_FACTS): "jwt" (carried one), "alg_none", "no_exp", ...
    jwt_facts: dict[str, int] = msgspec.field(default_factory=dict)
    # The parameters whose distinct-value sketch changed since the last summary (collector fleet view).
    param_sketches: list[ParamSketch] = msgspec.field(default_factory=list)


class AlertEndpoint(msgspec.Struct, forbid_unknown_fields=True):
    api: str
    method: str
    path: str


class AlertClient(msgspec.Struct, forbid_unknown_fields=True):
    ip: str | None = None
    principal: str | None = None  # keyed hash, never the raw principal


class AlertEvent(msgspec.Struct, forbid_unknown_fields=True):
    """One grouped alert as the sensor saw it in a window."""

    type: str  # stable alert type id, e.g. "API_SpikeInAPITraffic" or "SIG_SQLI"
    title: str
    severity: str  # "high" | "medium" | "low" | "informational"
    endpoint: AlertEndpoint
    client: AlertClient
    first_seen: datetime
    last_seen: datetime
    count: int = 1
    evidence: dict[str, object] = msgspec.field(default_factory=dict)
    rule_ids: list[str] = msgspec.field(default_factory=list)


class SensorInfo(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    name: str
    version: str
    mode: str  # "inline" | "mirror" | "replay"
    started_at: datetime


class SensorStats(msgspec.Struct, forbid_unknown_fields=True):
    """Cumulative counters since the sensor started; the collector keeps the latest."""

    exchanges: int = 0
    analysis_errors: int = 0
    dropped_batches: int = 0  # batches lost because queue and spool were full
    dropped_summaries: int = 0  # summaries inside those batches
    dropped_requests: int = 0  # requests counted by those summaries
    spooled_batches: int = 0  # batches currently waiting in the disk spool


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    batch_id: str  # unique, idempotency key at the collector
    sensor: SensorInfo
    created_at: datetime
    seq: int  # per-sensor sequence number; gaps show lost batches
    schema: int = SCHEMA_VERSION
    summaries: list[EndpointSummary] = msgspec.field(default_factory=list)
    alerts: list[AlertEvent] = msgspec.field(default_factory=list)
    stats: SensorStats = msgspec.field(default_factory=SensorStats)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(data: bytes) -> Batch:
    """Decode and validate a batch; raises ``msgspec.ValidationError`` / ``DecodeError``."""
    batch = _decoder.decode(data)
    if batch.schema != SCHEMA_VERSION:
        raise msgspec.ValidationError(f"unsupported batch schema {batch.schema}, expected {SCHEMA_VERSION}")
    return batch
