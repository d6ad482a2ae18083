"""Attack signatures end to end: detect mode alerts in the collector; enforce mode blocks before the
backend, proven by a backend that counts what it received."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.e2e.conftest import INGEST, CountingBackend, read_json, wait_for

ATTACKER = {"X-Forwarded-For": "185.220.101.34"}
SQLI = {"q": "1' UNION SELECT username, password FROM users--"}


async def start_sensor(tmp_path: Path, backend_url: str, collector: str, **extra: Any) -> SensorRuntime:
    cfg = SensorConfig(
        upstream=backend_url, listen="127.0.0.1:0", collector=collector, ingest_token=INGEST, window=1.0,
        trusted_proxies=["127.0.0.1/32"], api_name="attacks", state_dir=str(tmp_path / "sensor"), **extra,
    ).validate()
    runtime = SensorRuntime(cfg)
    await runtime.start()
    return runtime


@pytest.fixture
async def enforcing(
    tmp_path: Path, backend: tuple[CountingBackend, str], collector: str
) -> AsyncIterator[SensorRuntime]:
    runtime = await start_sensor(tmp_path, backend[1], collector, enforce=True)
    yield runtime
    await runtime.stop()


async def test_enforce_blocks_sql_injection_before_the_backend_and_passes_benign(
    enforcing: SensorRuntime, backend: tuple[CountingBackend, str], collector: str
) -> None:
    counting, _ = backend
    async with aiohttp.ClientSession(f"http://127.0.0.1:{enforcing.listen_port}") as client:
        async with client.get("/public/catalog", params=SQLI, headers=ATTACKER) as resp:
            assert resp.status == 403
            problem = await resp.json(content_type=None)
            assert problem["status"] == 403 and problem["request_id"] == resp.headers["X-Request-ID"]
            assert any(rule.startswith("SQLI") for rule in problem["rule_ids"])
        async with client.post("/items", json={"name": "x'; DROP TABLE items;--"}, headers=ATTACKER) as resp:
            assert resp.status == 403
        # benign traffic, including SQL-ish words in natural language, passes
        async with client.get("/public/catalog", params={"q": "select the best chair from our catalog"}) as resp:
            assert resp.status == 200
        async with client.post("/items", json={"name": "Drop-leaf table", "note": "update my order please"}) as resp:
            assert resp.status == 201
    assert counting.served == {("GET", "/public/catalog"): 1, ("POST", "/items"): 1}  # the blocked never arrived
    assert enforcing.proxy_counters.blocked == 2

    async def alerted() -> bool:
        alerts = (await read_json(collector, "/api/v1/alerts"))["items"]
        return len([a for a in alerts if a["type"] == "SIG_SQLI"]) == 2

    assert await wait_for(alerted, timeout=5)
    # one alert per (category, endpoint, client) per window
    alerts = [a for a in (await read_json(collector, "/api/v1/alerts"))["items"] if a["type"] == "SIG_SQLI"]
    assert sorted((a["endpoint"]["method"], a["endpoint"]["path"]) for a in alerts) == [
        ("GET", "/public/catalog"), ("POST", "/items")]
    for alert in alerts:
        assert alert["client"]["ip"] == "185.220.101.34"
        assert alert["count"] == 1 and alert["evidence"]["blocked"] == 1
        assert alert["severity"] == "high" and alert["status"] == "active"
        assert alert["owasp"] and alert["mitre_tactics"]
        assert alert["evidence"]["matches"] and all(len(m["excerpt"]) <= 64 for m in alert["evidence"]["matches"])


async def test_detect_mode_forwards_attacks_and_alerts(
    tmp_path: Path, backend: tuple[CountingBackend, str], collector: str
) -> None:
    counting, backend_url = backend
    runtime = await start_sensor(tmp_path, backend_url, collector)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime.listen_port}") as client:
            for _ in range(3):
                async with client.get("/public/catalog", params=SQLI, headers=ATTACKER) as resp:
                    assert resp.status == 200  # detect mode never changes traffic
            async with client.get("/public/catalog", headers={**ATTACKER, "User-Agent": "sqlmap/1.7"}) as resp:
                assert resp.status == 200
    finally:
        await runtime.stop()
    assert counting.served[("GET", "/public/catalog")] == 4

    async def alerted() -> bool:
        types = {a["type"]: a for a in (await read_json(collector, "/api/v1/alerts"))["items"]}
        return "SIG_SQLI" in types and "SIG_SCANNER" in types

    assert await wait_for(alerted, timeout=5)
    alerts = {a["type"]: a for a in (await read_json(collector, "/api/v1/alerts"))["items"]}
    assert alerts["SIG_SQLI"]["count"] == 3 and alerts["SIG_SQLI"]["evidence"]["blocked"] == 0
    endpoint = alerts["SIG_SQLI"]["endpoint"]
    assert (endpoint["api"], endpoint["method"], endpoint["path"]) == ("attacks", "GET", "/public/catalog")
