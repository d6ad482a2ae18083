"""Versioned schema migrations, the same list for SQLite and PostgreSQL.

``schema_version`` holds one row per applied migration. Migrations run in one transaction; on
PostgreSQL a transaction-scoped advisory lock makes collectors that start together take turns, so
only one applies each step.

Migration 1 creates the tables as ``schema.py`` describes them at version 1. Later changes to
``schema.py`` must come with a new migration here that performs exactly that change (explicit DDL), so
an existing database and a fresh one end up identical.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.store import schema

# Any constant works; it only has to be the same in every collector.
_PG_LOCK_KEY = 0x61706977  # "apiw"

Migration = tuple[int, str, Callable[[sa.Connection], None]]


def _create(conn: sa.Connection, names: tuple[str, ...]) -> None:
    tables = [t for t in schema.metadata.sorted_tables if t.name in names]
    schema.metadata.create_all(conn, tables=tables)


def _v1_initial(conn: sa.Connection) -> None:
    # The version-1 tables by name: tables added later belong to their own migration. (Version 1
    # originally took every table in ``schema``; with only version-1 tables there, that is the same.)
    _create(conn, schema.V1_TABLES)


def _v2_posture(conn: sa.Connection) -> None:
    _create(conn, schema.V2_TABLES)


def _v3_alert_export(conn: sa.Connection) -> None:
    _create(conn, schema.V3_TABLES)
    # A fresh database got this index with the version-1 alerts table (it is declared on that table);
    # an existing one gets it here. checkfirst makes both end up the same.
    schema.alerts_group_index.create(conn, checkfirst=True)


def _v4_token_facts(conn: sa.Connection) -> None:
    _create(conn, schema.V4_TABLES)


def _v5_fleet(conn: sa.Connection) -> None:
    # A fresh database got the column and the index with the version-1 endpoint_windows table (they
    # are declared on it); an existing one gets them here. Both end up the same.
    columns = {c["name"] for c in sa.inspect(conn).get_columns("endpoint_windows")}
    if "status_classes" not in columns:
        kind = sa.JSON().compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE endpoint_windows ADD COLUMN status_classes {kind}"))
    schema.endpoint_windows_start_index.create(conn, checkfirst=True)
    _create(conn, schema.V5_TABLES)


def _v6_sessions(conn: sa.Connection) -> None:
    _create(conn, schema.V6_TABLES)


MIGRATIONS: list[Migration] = [
    (1, "initial schema", _v1_initial),
    (2, "specs, endpoint_spec, findings, endpoint_hourly", _v2_posture),
    (3, "alert grouping index, alert_history, outbox, recommendation_state", _v3_alert_export),
    (4, "endpoint_jwt (token facts)", _v4_token_facts),
    (5, "fleet view: endpoint_windows.status_classes, param_sketches, fleet_marks", _v5_fleet),
    (6, "dashboard_sessions (shared by collector replicas)", _v6_sessions),
]

LATEST_VERSION = MIGRATIONS[-1][0]


async def current_version(conn: AsyncConnection) -> int:
    version = await conn.scalar(sa.select(sa.func.max(schema.schema_version.c.version)))
    return int(version or 0)


async def migrate(engine: AsyncEngine) -> int:
    """Bring the database to ``LATEST_VERSION``; returns the version it is at afterwards."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        await conn.run_sync(lambda c: schema.schema_version.create(c, checkfirst=True))
        version = await current_version(conn)
        if version > LATEST_VERSION:
            raise RuntimeError(
                f"database schema version {version} is newer than this collector ({LATEST_VERSION})"
            )
        for number, description, step in MIGRATIONS:
            if number <= version:
                continue
            await conn.run_sync(step)
            await conn.execute(
                schema.schema_version.insert().values(
                    version=number, description=description, applied_at=datetime.now(UTC)
                )
            )
            version = number
    return version
