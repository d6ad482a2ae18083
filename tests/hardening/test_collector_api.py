"""Collector API abuse: tokens and roles, oversized and malformed batches, hostile payloads, floods.

A real collector (``create_app``) on 127.0.0.1, on SQLite and on PostgreSQL.

"Clear error": each abuse gets its exact status (401 missing/unknown token, 403 wrong role, 413 too
large on the wire or inflated, 415 unknown encoding, 400 broken gzip, 422 invalid batch, 429 flood
with Retry-After) as a problem document, and never a 500 (the collector's own request metrics are
read back to prove it). "Nothing lost": a valid batch sent after the abuse is stored.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from collector.app import create_app
from collector.ratelimit import RateLimiter, TokenBuckets
from collector.settings import CollectorSettings, Role, Token
from sensor.events import encode_batch
from tests.collector import factories
from tests.e2e.conftest import serve

INGEST, READ, ADMIN = "h-ingest-token-0123456789", "h-read-token-0123456789ab", "h-admin-token-0123456789a"
MAX_BODY = 64 * 1024
MAX_INFLATED = 1024 * 1024


def _settings(db: str) -> CollectorSettings:
    return CollectorSettings(
        database_url=db,
        tokens=[Token(Role.INGEST, INGEST, "ingest"), Token(Role.READ, READ, "read"),
                Token(Role.ADMIN, ADMIN, "admin")],
        max_body_bytes=MAX_BODY,
        max_decompressed_bytes=MAX_INFLATED,
        log_level="warning",
        sweep_seconds=0,
    ).validate()


@pytest.fixture
async def collector(db_url: str) -> AsyncIterator[str]:
    runner, port = await serve(create_app(_settings(db_url)))
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def sqlite_collector(tmp_path: Path) -> AsyncIterator[str]:
    runner, port = await serve(create_app(_settings(f"sqlite:///{tmp_path / 'c.db'}")))
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _valid_batch() -> bytes:
    return encode_batch(factories.batch(sensor_id=f"s-{uuid.uuid4().hex[:8]}"))


async def _server_errors(url: str) -> int:
    """5xx answers so far, from the collector's own Prometheus metrics."""
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics", headers=bearer(READ)) as r:
        text = await r.text()
    total = 0
    for line in text.splitlines():
        if line.startswith("apiward_collector_http_requests_total{") and 'status="5' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def _post(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s, s.post(url + path, data=body, headers=headers) as r:
        raw = await r.read()
        doc = json.loads(raw) if raw else {}
        return r.status, doc, r.headers


AUTH_CASES = [
    ("GET", "/api/v1/inventory", {}, 401),
    ("GET", "/api/v1/inventory", bearer("not-a-known-token-0000000"), 401),
    ("GET", "/api/v1/inventory", {"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    ("GET", "/api/v1/inventory", {"Authorization": "Bearer"}, 401),
    ("GET", "/api/v1/inventory", {"Authorization": "Bearer " + "x" * 8000}, 401),
    ("GET", "/api/v1/inventory", bearer(INGEST), 403),
    ("POST", "/api/v1/events", {}, 401),
    ("POST", "/api/v1/events", bearer(READ), 403),
    ("POST", "/api/v1/events", bearer(ADMIN), 403),
    ("PATCH", "/api/v1/alerts/1", bearer(READ), 403),
    ("PATCH", "/api/v1/alerts/1", bearer(INGEST), 403),
    ("GET", "/api/v1/inventory", bearer(READ), 200),
    ("GET", "/api/v1/inventory", bearer(ADMIN), 200),
]


async def test_tokens_and_roles_exact_answers(sqlite_collector: str) -> None:
    """401 with a Bearer challenge for missing/unknown/malformed credentials, 403 for a wrong role."""
    async with aiohttp.ClientSession() as s:
        for method, path, headers, expected in AUTH_CASES:
            async with s.request(method, sqlite_collector + path, headers=headers, json={}) as r:
                assert r.status == expected, (method, path, headers.get("Authorization", "")[:20], r.status)
                if expected == 401:
                    assert r.headers["WWW-Authenticate"].startswith("Bearer")
                if expected >= 400:
                    assert r.content_type == "application/problem+json"
    assert await _server_errors(sqlite_collector) == 0


def _deep(n: int) -> bytes:
    return b'{"schema":1,"batch_id":"' + b"[" * n + b"]" * n + b'"}'


GZ = {"Content-Encoding": "gzip"}
MALFORMED: list[tuple[str, bytes, dict[str, str], int]] = [
    ("wire_too_large", b"x" * (MAX_BODY + 1), {}, 413),
    ("inflated_too_large", gzip.compress(b" " * (MAX_INFLATED + 10)), {"Content-Encoding": "gzip"}, 413),
    ("not_gzip", b"plain text", {"Content-Encoding": "gzip"}, 400),
    ("truncated_gzip", gzip.compress(_valid_batch())[:-12], {"Content-Encoding": "gzip"}, 400),
    ("brotli", b"\x1b\x00", {"Content-Encoding": "br"}, 415),
    ("not_json", b"{not json", {}, 422),
    ("empty", b"", {}, 422),
    ("json_array", b"[]", {}, 422),
    ("deep_nesting_100k", gzip.compress(b"[" * 100_000 + b"]" * 100_000), GZ, 422),
    ("deep_object_100k", gzip.compress(b'{"a":' * 100_000 + b"1" + b"}" * 100_000), GZ, 422),
    ("deep_nesting_in_field", _deep(5000), {}, 422),
    ("invalid_utf8", _valid_batch().replace(b'"name"', b'"\xff\xfe"', 1), {}, 422),
    ("nul_in_string", _valid_batch().replace(b'"inline"', b'"in\\u0000line"', 1), {}, 422),
    ("huge_number", gzip.compress(_valid_batch().replace(b'"seq":', b'"seq":' + b"9" * 100_000 + b',"x":', 1)),
     GZ, 422),
    ("huge_float", gzip.compress(_valid_batch().replace(b'"p50":100', b'"p50":1e999999', 1)), GZ, 422),
    ("negative_count", _valid_batch().replace(b'"requests":10', b'"requests":-1', 1), {}, 422),
    ("nan", _valid_batch().replace(b'"requests":10', b'"requests":NaN', 1), {}, 422),
    ("unknown_field", _valid_batch()[:-1] + b',"evil":1}', {}, 422),
    ("lone_surrogate", _valid_batch().replace(b'"inline"', b'"\\ud800"', 1), {}, 422),
    ("long_method", _valid_batch().replace(b'"method":"GET"', b'"method":"' + b"G" * 5000 + b'"', 1), {}, 422),
]


@pytest.mark.timeout(120)
async def test_malformed_batches_exact_answers_never_500(collector: str) -> None:
    """Each malformed batch gets its exact 4xx; no 5xx is ever counted; a valid batch is still stored."""
    for name, body, extra, expected in MALFORMED:
        headers = {**bearer(INGEST), "Content-Type": "application/json", **extra}
        status, doc, _ = await _post(collector, "/api/v1/events", body, headers)
        assert status == expected, (name, status, doc)
        assert doc.get("status") == expected and doc.get("detail"), (name, doc)
    status, doc, _ = await _post(collector, "/api/v1/events", _valid_batch(), bearer(INGEST))
    assert status == 200 and doc["duplicate"] is False
    assert await _server_errors(collector) == 0


def _hostile_batch() -> bytes:
    """Legal but hostile content: odd Unicode, max-length strings, counters at the bound."""
    long_path = "/" + "é" * 1000 + "/{id}"
    s = factories.summary(path=long_path, requests=2**53)
    s = msgspec.structs.replace(s, status_classes={"2xx": 2**53}, auth_schemes={"jwt": 1})
    a = factories.alert("SIG_SQLI", path="/x/\u202e\U0001f600/{id}")
    a = msgspec.structs.replace(a, evidence={"excerpt": "' OR 1=1 -- \u2028", "nested": {"a": [1, 2, {"b": "c"}]}})
    return encode_batch(factories.batch([s], [a], sensor_id=f"hostile-{uuid.uuid4().hex[:6]}"))


async def test_hostile_but_valid_batch_is_stored(collector: str) -> None:
    """A batch at the edge of the contract (counters at 2**53, RTL override and emoji, 1000 non-ASCII
    characters in a path) is stored and read back on SQLite and PostgreSQL, no 500."""
    status, doc, _ = await _post(collector, "/api/v1/events", _hostile_batch(), bearer(INGEST))
    assert status == 200, doc
    async with aiohttp.ClientSession(headers=bearer(READ)) as s:
        async with s.get(collector + "/api/v1/endpoints") as r:
            assert r.status == 200
            paths = [e["path"] for e in (await r.json())["items"]]
        assert any(p.startswith("/" + "é" * 10) for p in paths)
        async with s.get(collector + "/api/v1/alerts") as r:
            assert r.status == 200
    assert await _server_errors(collector) == 0


async def test_flood_gets_429_per_token_and_recovers(tmp_path: Path) -> None:
    """Over its token bucket a caller gets 429 + Retry-After (problem document); another credential from
    the same address is unaffected (per-token buckets); after Retry-After the caller is served again."""
    app = create_app(_settings(f"sqlite:///{tmp_path / 'flood.db'}"))
    limiter = RateLimiter(per_token=TokenBuckets(rate=5, burst=10), per_ip=TokenBuckets(rate=1000, burst=1000))
    mw = next(m for m in app.middlewares if hasattr(m, "limiter"))
    mw.limiter = limiter  # type: ignore[union-attr]
    runner, port = await serve(app)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:

            async def get(token: str) -> tuple[int, str | None]:
                async with s.get(url + "/api/v1/sensors", headers=bearer(token)) as r:
                    await r.read()
                    return r.status, r.headers.get("Retry-After")

            answers = await asyncio.gather(*(get(READ) for _ in range(40)))
            statuses = [a[0] for a in answers]
            assert set(statuses) == {200, 429} and statuses.count(200) <= 12, statuses
            assert all(ra is not None and int(ra) >= 1 for st, ra in answers if st == 429)
            assert (await get(ADMIN))[0] == 200  # another credential, same IP
            bad = await asyncio.gather(*(get(f"bad-token-{i:020d}") for i in range(5)))
            assert {b[0] for b in bad} == {401}  # unknown tokens: own buckets, still 401
            await asyncio.sleep(1.1)
            assert (await get(READ))[0] == 200
        assert limiter.limited == statuses.count(429)
        assert await _server_errors(url) == 0
    finally:
        await runner.cleanup()


async def test_flood_per_ip_bounds_unauthenticated_callers(tmp_path: Path) -> None:
    """Without any token, a flood from one address is limited by the per-IP bucket (429 before 401)."""
    app = create_app(_settings(f"sqlite:///{tmp_path / 'flood.db'}"))
    mw = next(m for m in app.middlewares if hasattr(m, "limiter"))
    mw.limiter = RateLimiter(per_token=TokenBuckets(0, 0), per_ip=TokenBuckets(rate=2, burst=5))  # type: ignore[union-attr]
    runner, port = await serve(app)
    try:
        async with aiohttp.ClientSession() as s:
            statuses = []
            for _ in range(12):
                async with s.get(f"http://127.0.0.1:{port}/api/v1/inventory") as r:
                    statuses.append(r.status)
        assert statuses[:5] == [401] * 5 and 429 in statuses[5:]
    finally:
        await runner.cleanup()


def test_token_buckets_are_bounded() -> None:
    """A million distinct keys never hold more than max_keys buckets."""
    b = TokenBuckets(rate=1, burst=1, max_keys=1000)
    for i in range(100_000):
        b.take(f"k{i}")
    assert len(b) == 1000
    assert RateLimiter.from_env({"APIWARD_RATE_LIMIT_TOKEN_RPS": "0"}).per_token.take("x") == 0.0
    with pytest.raises(ValueError, match="APIWARD_RATE_LIMIT_IP_RPS"):
        RateLimiter.from_env({"APIWARD_RATE_LIMIT_IP_RPS": "fast"})
