"""Collector fixtures: stores on SQLite and PostgreSQL, a running app with tokens per role.

PostgreSQL: 127.0.0.1:5432, user ``postgres``, trust auth. One database per test session
(``apiward_test_<random>``), dropped at the end; each test gets an empty ``public`` schema. When the
server is unreachable the PostgreSQL cases skip locally and FAIL under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from collector.app import create_app
from collector.settings import CollectorSettings, Role, Token
from collector.store import Store

PG_DSN = os.environ.get("APIWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

INGEST_TOKEN = "ingest-token-0123456789"
READ_TOKEN = "read-token-0123456789ab"
ADMIN_TOKEN = "admin-token-0123456789a"
TOKENS = {Role.INGEST: INGEST_TOKEN, Role.READ: READ_TOKEN, Role.ADMIN: ADMIN_TOKEN}


def bearer(role: Role | str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[Role(role)]}"}


def _with_database(dsn: str, name: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + name


async def _pg_admin_async(sql: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_admin(sql: str) -> None:
    # In its own thread with its own loop: the session fixture may be first requested from inside a
    # running test loop (an async fixture), where asyncio.run is not allowed.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _pg_admin_async(sql)).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this session."""
    name = f"apiward_test_{uuid.uuid4().hex[:12]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL at {PG_DSN} is unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield _with_database(PG_DSN, name)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _reset_pg(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'collector.db'}"
        return
    url: str = request.getfixturevalue("pg_database")
    await _reset_pg(url)
    yield url
    await _reset_pg(url)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'app.db'}")
    yield s
    await s.close()


@pytest.fixture
def settings() -> CollectorSettings:
    return CollectorSettings(
        tokens=[Token(role, secret, f"{role.value}-test") for role, secret in TOKENS.items()],
        max_body_bytes=256 * 1024,
        max_decompressed_bytes=1024 * 1024,
    ).validate()


@pytest.fixture
async def api(aiohttp_client: Any, settings: CollectorSettings, sqlite_store: Store) -> TestClient[Any, Any]:
    """The collector app on a real socket, backed by a SQLite store the test can inspect."""
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, sqlite_store))
    return client
