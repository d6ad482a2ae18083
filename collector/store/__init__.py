"""Persistence: schema, migrations and queries (SQLite by default, PostgreSQL for shared deployments)."""

from collector.store.store import (
    AlertFilter,
    AlertRow,
    ApiRow,
    DataTypeRow,
    EndpointFacts,
    EndpointFilter,
    InvalidCursor,
    Page,
    SensorRow,
    Store,
)

__all__ = [
    "AlertFilter",
    "AlertRow",
    "ApiRow",
    "DataTypeRow",
    "EndpointFacts",
    "EndpointFilter",
    "InvalidCursor",
    "Page",
    "SensorRow",
    "Store",
]
