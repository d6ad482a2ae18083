"""Hostile tokens and payloads: through the analysis pipeline, then end to end to the collector.

"Nothing lost": every hostile request is answered by the backend and counted in the collector's
endpoint summaries (SQLite and PostgreSQL), the sensor reports zero analysis errors. "Clear
finding": alg ``none`` is reported unsigned, broken tokens malformed, nothing crashes, and a token's
``jku``/``x5u`` URL (a local canary server) is never fetched. The collector stores or refuses with
4xx, never a 500.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from collector.app import create_app
from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from sensor.evidence import PrincipalHasher
from sensor.exchange import Exchange
from sensor.pipeline import Pipeline
from sensor.summary import SummaryAggregator
from tests.e2e.conftest import serve
from tests.hardening.test_collector_api import INGEST, READ, _server_errors, _settings, bearer
from tests.sensor.proxy_helpers import Upstream


class BigHeaderUpstream(Upstream):
    """The echo upstream, accepting header fields up to 128 KiB (aiohttp's default is 8 KiB)."""

    async def start(self) -> BigHeaderUpstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, max_field_size=128 * 1024, max_line_size=128 * 1024)
        await self.runner.setup()
        self.runner_site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await self.runner_site.start()
        self.port = int(self.runner.addresses[0][1])
        return self


def b64(doc: object) -> str:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(header: dict[str, object], claims: object, sig: str = "c2lnbmF0dXJl") -> str:
    return f"{b64(header)}.{b64(claims)}.{sig}"


class Canary:
    """A local HTTP server that counts every hit: a jku/x5u target that must never be fetched."""

    def __init__(self) -> None:
        self.hits = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _hit(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"keys": []})

    async def start(self) -> Canary:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._hit)
        self.runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}"
        return self


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    c = await Canary().start()
    yield c
    assert c.runner is not None
    await c.runner.cleanup()


def hostile_requests(canary_url: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(method, path, headers, body) of every hostile input."""
    now = int(time.time())
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    return [
        ("GET", "/t/alg-none", {"Authorization": "Bearer " + jwt({"alg": "none"}, {"sub": "u1"}, "")}, b""),
        ("GET", "/t/alg-None", {"Authorization": "Bearer " + jwt({"alg": "NoNe"}, {"sub": "u1"})}, b""),
        ("GET", "/t/bad-header", {"Authorization": "Bearer eyJ!!!.eyJhIjoxfQ.sig"}, b""),
        ("GET", "/t/bad-payload", {"Authorization": "Bearer " + b64({"alg": "HS256"}) + ".%%%.sig"}, b""),
        ("GET", "/t/too-many-dots", {"Authorization": "Bearer eyJh.eyJh.a.b.c.d.e"}, b""),
        ("GET", "/t/header-array", {"Authorization": "Bearer " + b64([1, 2]) + "." + b64({"sub": "x"}) + ".s"}, b""),
        ("GET", "/t/claims-not-object", {"Authorization": "Bearer " + jwt({"alg": "HS256"}, [1] * 10)}, b""),
        ("GET", "/t/huge-token", {"Authorization": "Bearer " + jwt({"alg": "HS256"}, {"sub": "x" * 48_000})}, b""),
        ("GET", "/t/huge-exp", {"Authorization": "Bearer " + jwt({"alg": "HS256"}, {"sub": "u", "exp": 10**400})}, b""),
        ("GET", "/t/jku", {"Authorization": "Bearer " + jwt(
            {"alg": "RS256", "jku": canary_url + "/jwks.json", "x5u": canary_url + "/cert.pem",
             "kid": "../../etc/passwd"}, {"sub": "u2", "exp": now + 3600})}, b""),
        ("POST", "/p/deep-json", {"Content-Type": "application/json"}, deep),
        ("POST", "/p/deep-array", {"Content-Type": "application/json"}, b"[" * 100_000 + b"]" * 100_000),
        ("POST", "/p/invalid-utf8", {"Content-Type": "application/json"}, b'{"name": "\xff\xfe\xc3\x28", "e": "b"}'),
        ("POST", "/p/nul", {"Content-Type": "application/json"}, b'{"na\\u0000me": "x\\u0000y", "card": "\\u0000"}'),
        ("POST", "/p/huge-number", {"Content-Type": "application/json"}, b'{"n": ' + b"7" * 100_000 + b"}"),
        ("POST", "/p/huge-number-short", {"Content-Type": "application/json"}, b'{"n": ' + b"7" * 60_000 + b"}"),
        ("POST", "/p/form-bomb", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1&" * 60_000),
        ("GET", "/q/params?" + "&".join(f"p{i}=%FF%00" for i in range(3000)), {}, b""),
    ]


def test_pipeline_findings_on_hostile_tokens_and_bodies(tmp_path: Path) -> None:
    """Pure analysis: no exception, no analysis error; alg none -> unsigned, broken tokens -> malformed,
    the jku token is decoded without any fetch (the pipeline does no network IO at all)."""
    cfg = SensorConfig(upstream="http://127.0.0.1:1", api_name="hostile", state_dir=str(tmp_path))
    pipeline = Pipeline(cfg, SummaryAggregator(60), PrincipalHasher(b"k" * 32))
    findings: dict[str, object] = {}
    for method, target, headers, body in hostile_requests("http://127.0.0.1:9"):
        path, _, query = target.partition("?")
        ex = Exchange(
            request_id="r", method=method, path=path, query_string=query,
            request_headers=CIMultiDictProxy(CIMultiDict(headers)), peer_ip="203.0.113.5",
            request_body=body[:cfg.inspect_bytes], request_body_size=len(body), status=200,
            response_headers=CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"})),
            response_body=body[:cfg.inspect_bytes], response_body_size=len(body), started_at=time.time(),
        )
        result: Any = pipeline.analyse(ex)  # raises on a bug: the test names the input
        obs = result[0] if isinstance(result, tuple) else result  # (Observation, ScanResult) since signatures
        findings[path] = obs.auth.jwt
        pipeline.submit(ex)
    assert pipeline.counters.analysis_errors == 0, pipeline.counters.errors_by_stage
    none = findings["/t/alg-none"]
    assert none is not None and none.unsigned and none.alg == "none"  # type: ignore[attr-defined]
    assert findings["/t/alg-None"].unsigned  # type: ignore[attr-defined]
    assert findings["/t/header-array"] is None  # no "eyJ" prefix: an opaque bearer token, not a JWT
    for path in ("/t/bad-header", "/t/bad-payload", "/t/too-many-dots", "/t/claims-not-object"):
        assert findings[path] is not None and findings[path].malformed, path  # type: ignore[attr-defined]
    jku = findings["/t/jku"]
    assert jku is not None and jku.alg == "RS256" and not jku.malformed  # type: ignore[attr-defined]
    assert findings["/t/huge-exp"].exp is None  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
async def test_hostile_traffic_end_to_end_collector_stores_never_500(
    tmp_path: Path, db_url: str, canary: Canary
) -> None:
    """Through the real sensor runtime (inline, all analysis) to a collector on SQLite and PostgreSQL:
    every request answered by the backend, all counted in the collector, zero analysis errors, zero
    collector 5xx, the canary never fetched."""
    upstream = await BigHeaderUpstream().start()
    runner, port = await serve(create_app(_settings(db_url)))
    collector = f"http://127.0.0.1:{port}"
    cfg = SensorConfig(
        upstream=upstream.url, listen="127.0.0.1:0", collector=collector, ingest_token=INGEST, window=1.0,
        api_name="hostile", state_dir=str(tmp_path / "sensor"), spec_sync_interval=0,
        max_header_bytes=96 * 1024,  # the 64 KiB token is analysed, not refused by the parser (400 at 16 KiB)
    ).validate()
    runtime = SensorRuntime(cfg)
    await runtime.start()
    requests = hostile_requests(canary.url)
    try:
        async with aiohttp.ClientSession() as client:
            for method, target, headers, body in requests:
                url = f"http://127.0.0.1:{runtime.listen_port}{target}"
                async with client.request(method, url, headers=headers, data=body or None) as r:
                    assert r.status == 200, (target, r.status)
                    assert await r.read() == body
    finally:
        await runtime.stop()
    try:
        assert len(upstream.seen) == len(requests)
        assert runtime.pipeline.counters.exchanges == len(requests)
        assert runtime.stats().analysis_errors == 0, runtime.pipeline.counters.errors_by_stage
        assert runtime.shipper.rejected_batches == 0 and runtime.shipper.dropped_batches == 0
        async with aiohttp.ClientSession(headers=bearer(READ)) as s, s.get(collector + "/api/v1/endpoints") as r:
            assert r.status == 200
            items = (await r.json())["items"]
        assert sum(e["requests_30d"] for e in items) == len(requests)
        assert await _server_errors(collector) == 0
        assert canary.hits == 0
    finally:
        await runner.cleanup()
        await upstream.stop()
