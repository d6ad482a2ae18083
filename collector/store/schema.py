"""Tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

The shape is normalised so that every counter is a row that SQL can increment in place: collectors
sharing one PostgreSQL only ever run ``ON CONFLICT ... DO UPDATE SET n = t.n + excluded.n`` and never
read a value into Python to write it back, so no update is lost between them.

Ids are content hashes (``ids.py``), so every collector derives the same id for the same endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; naive values are taken as UTC.

    SQLite has no time zones and SQLAlchemy drops ``tzinfo`` there, so we normalise to UTC on the way
    in (the stored text then sorts chronologically, which ``min``/``max`` in upserts rely on) and
    attach UTC on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC) if dialect.name != "sqlite" else value
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite expressions (min/max) can come back as text
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()
ID = sa.String(64)
Count = sa.BigInteger

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

# Inserted first in every ingest transaction: a duplicate batch id aborts the whole batch.
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(128), primary_key=True),
    sa.Column("sensor_id", sa.String(128), nullable=False),
    sa.Column("seq", Count, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("summaries", sa.Integer, nullable=False),
    sa.Column("alerts", sa.Integer, nullable=False),
)

sensors = sa.Table(
    "sensors",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(32), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_batch_at", UTCDateTime, nullable=False),
    sa.Column("last_seq", Count, nullable=False),
    sa.Column("batches", Count, nullable=False),
    # Latest cumulative SensorStats (the sensor counts since its start; we keep the newest report).
    sa.Column("exchanges", Count, nullable=False),
    sa.Column("analysis_errors", Count, nullable=False),
    sa.Column("dropped_batches", Count, nullable=False),
    sa.Column("dropped_summaries", Count, nullable=False),
    sa.Column("dropped_requests", Count, nullable=False),
    sa.Column("spooled_batches", Count, nullable=False),
)

apis = sa.Table(
    "apis",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
)

endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("api_id", ID, sa.ForeignKey("apis.id"), nullable=False),
    sa.Column("api", sa.String(200), nullable=False),  # denormalised for filters and ordering
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.String(2048), nullable=False),
    sa.Column("name", sa.String(200), nullable=True),  # operation name from a spec
    sa.Column("from_spec", sa.Boolean, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=True),
    sa.Column("last_called", UTCDateTime, nullable=True),  # null: known (spec) but never called
    sa.Column("last_external", UTCDateTime, nullable=True),
    sa.Column("requests", Count, nullable=False),
    sa.Column("unauthenticated_success", Count, nullable=False),
    sa.Column("authenticated_success", Count, nullable=False),
    sa.Column("unauthenticated_rejected", Count, nullable=False),
    sa.Column("plaintext_requests", Count, nullable=False),
    sa.Column("external_requests", Count, nullable=False),
    sa.Index("ix_endpoints_order", "api", "path", "method"),
)


def _endpoint_fk() -> sa.Column[str]:
    return sa.Column("endpoint_id", ID, sa.ForeignKey("endpoints.id"), primary_key=True)


endpoint_daily = sa.Table(
    "endpoint_daily",
    metadata,
    _endpoint_fk(),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("requests", Count, nullable=False),
    sa.Column("external_requests", Count, nullable=False),
)

endpoint_auth = sa.Table(
    "endpoint_auth",
    metadata,
    _endpoint_fk(),
    sa.Column("scheme", sa.String(64), primary_key=True),
    sa.Column("count", Count, nullable=False),
)

endpoint_status = sa.Table(
    "endpoint_status",
    metadata,
    _endpoint_fk(),
    sa.Column("status_class", sa.String(8), primary_key=True),
    sa.Column("count", Count, nullable=False),
)

endpoint_params = sa.Table(
    "endpoint_params",
    metadata,
    _endpoint_fk(),
    sa.Column("location", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("count", Count, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
)

endpoint_data_types = sa.Table(
    "endpoint_data_types",
    metadata,
    _endpoint_fk(),
    sa.Column("type", sa.String(64), primary_key=True),
    sa.Column("location", sa.String(32), primary_key=True),
    sa.Column("path", sa.String(512), primary_key=True),
    sa.Column("status_class", sa.String(8), primary_key=True),
    sa.Column("count", Count, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Index("ix_endpoint_data_types_type", "type"),
)

# One row per sensor window: the series behind the dashboard's charts.
endpoint_windows = sa.Table(
    "endpoint_windows",
    metadata,
    _endpoint_fk(),
    sa.Column("sensor_id", sa.String(128), primary_key=True),
    sa.Column("window_start", UTCDateTime, primary_key=True),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("requests", Count, nullable=False),
    sa.Column("latency_p50", sa.Float, nullable=False),
    sa.Column("latency_p95", sa.Float, nullable=False),
    sa.Column("latency_max", sa.Float, nullable=False),
    sa.Column("request_size_p50", sa.Float, nullable=False),
    sa.Column("request_size_p95", sa.Float, nullable=False),
    sa.Column("request_size_max", sa.Float, nullable=False),
    sa.Column("response_size_p50", sa.Float, nullable=False),
    sa.Column("response_size_p95", sa.Float, nullable=False),
    sa.Column("response_size_max", sa.Float, nullable=False),
    # Version 5 (fleet view): requests per status class ({"2xx": n}); NULL in windows stored before.
    sa.Column("status_classes", sa.JSON, nullable=True),
)

# Alerts grouped by (type, endpoint, client ip, principal); the id is a hash of that key.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("endpoint_id", ID, nullable=False),  # no FK: an alert may name an unsummarised endpoint
    sa.Column("api", sa.String(200), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.String(2048), nullable=False),
    sa.Column("client_ip", sa.String(64), nullable=False),  # "" when unknown (part of the key)
    sa.Column("principal", sa.String(128), nullable=False),  # "" when unknown
    sa.Column("count", Count, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),  # the latest evidence
    sa.Column("rule_ids", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_by", sa.String(200), nullable=True),
    sa.Column("status_at", UTCDateTime, nullable=True),
    sa.Index("ix_alerts_last_seen", "last_seen", "id"),
    sa.Index("ix_alerts_endpoint", "endpoint_id", "status"),
)

# --- version 2: imported specs, posture findings ----------------------------------------------

# One row per API that has an imported spec; re-importing replaces it. ``operations`` is the compact
# operation list the sensors pull (``GET /api/v1/specs/templates``); ``etag`` is its content hash.
specs = sa.Table(
    "specs",
    metadata,
    sa.Column("api_id", ID, sa.ForeignKey("apis.id"), primary_key=True),
    sa.Column("api", sa.String(200), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),  # the document's info.version
    sa.Column("spec_format", sa.String(32), nullable=False),  # "swagger 2.0", "openapi 3.1.0"
    sa.Column("base_url", sa.String(2048), nullable=False),
    sa.Column("base_path", sa.String(2048), nullable=False),
    sa.Column("source", sa.String(2048), nullable=False),  # file name or URL it came from
    sa.Column("operations", sa.JSON, nullable=False),
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("imported_at", UTCDateTime, nullable=False),
)

# The spec's word on one endpoint. A row here means "declared in the API's current spec"; an
# endpoint of an API with a spec and no row here is a shadow endpoint.
endpoint_spec = sa.Table(
    "endpoint_spec",
    metadata,
    _endpoint_fk(),
    sa.Column("api_id", ID, nullable=False),
    sa.Column("operation_id", sa.String(200), nullable=True),
    sa.Column("deprecated", sa.Boolean, nullable=False),
    sa.Column("security", sa.JSON, nullable=False),  # list of scheme names; [] = declared open
    sa.Column("security_declared", sa.Boolean, nullable=False),  # False: spec says nothing
    sa.Column("params", sa.JSON, nullable=False),  # [{"location", "name"}], sensor locations
    sa.Column("body_declared", sa.Boolean, nullable=False),  # request body properties are known
    sa.Index("ix_endpoint_spec_api", "api_id"),
)

# Posture findings; the id is a hash of (type, endpoint), so re-evaluation updates in place.
findings = sa.Table(
    "findings",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("endpoint_id", ID, nullable=False),
    sa.Column("api_id", ID, nullable=False),
    sa.Column("api", sa.String(200), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.String(2048), nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | resolved
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Index("ix_findings_endpoint", "endpoint_id", "status"),
    sa.Index("ix_findings_order", "status", "severity", "id"),
)

# Hourly roll-up of ``endpoint_windows`` once the per-window rows pass the retention age.
endpoint_hourly = sa.Table(
    "endpoint_hourly",
    metadata,
    _endpoint_fk(),
    sa.Column("hour", UTCDateTime, primary_key=True),
    sa.Column("requests", Count, nullable=False),
    sa.Column("windows", Count, nullable=False),
    sa.Column("latency_p95_max", sa.Float, nullable=False),
    sa.Column("latency_max", sa.Float, nullable=False),
    sa.Column("request_size_max", sa.Float, nullable=False),
    sa.Column("response_size_max", sa.Float, nullable=False),
)

V1_TABLES = (
    "batches", "sensors", "apis", "endpoints", "endpoint_daily", "endpoint_auth", "endpoint_status",
    "endpoint_params", "endpoint_data_types", "endpoint_windows", "alerts",
)
V2_TABLES = ("specs", "endpoint_spec", "findings", "endpoint_hourly")

# --- version 3: alert lifecycle and export -----------------------------------------------------

# Finds the alert of a (type, endpoint, client) group that a new occurrence falls into (grouping window).
alerts_group_index = sa.Index(
    "ix_alerts_group", alerts.c.endpoint_id, alerts.c.type, alerts.c.client_ip, alerts.c.principal, alerts.c.last_seen
)

# SQLite only aliases the rowid (and so only autoincrements) for a column declared exactly INTEGER.
_Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Every status change of an alert: who (token name, or "apiward" for the collector itself) and when.
alert_history = sa.Table(
    "alert_history",
    metadata,
    sa.Column("id", _Serial, primary_key=True, autoincrement=True),
    sa.Column("alert_id", ID, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("by", sa.String(200), nullable=False),
    sa.Column("from_status", sa.String(16), nullable=True),  # null: the alert was created
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("note", sa.String(300), nullable=True),  # e.g. the suppression rule id
    sa.Index("ix_alert_history_alert", "alert_id", "id"),
)

# The durable outbox: one row per (export event, exporter), written in the transaction that made the
# change. Delivered rows are deleted; rows that exhausted their attempts stay with state "dead".
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", _Serial, primary_key=True, autoincrement=True),
    sa.Column("exporter", sa.String(100), nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("subject_id", sa.String(128), nullable=False),  # alert id or recommendation id
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # queued | dead
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_owner", sa.String(100), nullable=True),  # the dispatcher holding the row (SQLite's lock)
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Index("ix_outbox_due", "exporter", "state", "next_attempt_at", "id"),
)

# The last exported status of each recommendation, so "became unhealthy" is an edge, emitted once.
recommendation_state = sa.Table(
    "recommendation_state",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("changed_at", UTCDateTime, nullable=False),
)

V3_TABLES = ("alert_history", "outbox", "recommendation_state")

# --- version 4: token facts --------------------------------------------------------------------

# Requests per JWT fact (collector.store.rows.JWT_FACTS: "jwt", "alg_none", "no_exp", ...), with the
# first and last window that reported it, so a fact ages out of the 30-day view like data types do.
endpoint_jwt = sa.Table(
    "endpoint_jwt",
    metadata,
    _endpoint_fk(),
    sa.Column("fact", sa.String(32), primary_key=True),
    sa.Column("count", Count, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
)

V4_TABLES = ("endpoint_jwt",)

# --- version 5: fleet view (collector.fleet_jobs) ------------------------------------------------

# The fleet job reads every sensor's recent windows; a fresh database gets this index through
# version 1 (it is declared here), an existing one through version 5.
endpoint_windows_start_index = sa.Index("ix_endpoint_windows_start", endpoint_windows.c.window_start)

# One sensor's HyperLogLog of one parameter's values in one epoch-aligned distinct window: the
# register-wise max of everything that sensor shipped for it (sketches are cumulative, so a re-ship
# only raises registers). ``hash_id`` names the value-hash key: only sketches with the same one merge.
param_sketches = sa.Table(
    "param_sketches",
    metadata,
    _endpoint_fk(),
    sa.Column("sensor_id", sa.String(128), primary_key=True),
    sa.Column("location", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("window_start", UTCDateTime, primary_key=True),
    sa.Column("window_seconds", sa.Float, nullable=False),
    sa.Column("hash_id", sa.String(32), nullable=False),
    sa.Column("registers", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_param_sketches_window", "window_start"),
)

# One row per fleet finding that became an alert: inserted (if absent) in the transaction that raises
# the alert, so each finding is raised once, whichever collector replica sees it first.
fleet_marks = sa.Table(
    "fleet_marks",
    metadata,
    sa.Column("type", sa.String(100), primary_key=True),
    sa.Column("endpoint_id", ID, primary_key=True),
    sa.Column("scope", sa.String(300), primary_key=True),  # status class, or "location:name"
    sa.Column("window_start", UTCDateTime, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_fleet_marks_window", "window_start"),
)

V5_TABLES = ("param_sketches", "fleet_marks")

# Dashboard sessions, in the database so that every collector replica knows every login (a load
# balancer needs no sticky sessions). Keyed by the SHA-256 of the cookie value: the table holds no
# usable cookie. Times are epoch seconds (wall clock: the replicas share them).
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("id_digest", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("token_ref", sa.String(32), nullable=False),  # collector.auth.token_ref of the login token
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Index("ix_dashboard_sessions_last_seen", "last_seen"),
)

V6_TABLES = ("dashboard_sessions",)
