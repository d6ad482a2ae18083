"""Privacy canary: 1,000 distinct secrets and personal values go through the sensor; none comes out.

Searched: every log line (at debug level, the most talkative), every collector answer, and the
collector's database files byte for byte (which hold every batch that was ingested).
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import aiohttp
from aiohttp import web

from apiward.logs import configure_logging
from collector.app import create_app
from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.e2e.conftest import INGEST, collector_settings, read_json, serve, wait_for


def luhn_complete(prefix: str, length: int) -> str:
    digits = [int(d) for d in prefix]
    while len(digits) < length - 1:
        digits.append(random.randint(0, 9))
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def canaries(n: int) -> list[dict[str, str]]:
    """n/4 requests, each carrying 4 distinct planted values."""
    random.seed(1234)
    out = []
    for i in range(n // 4):
        sub = f"user-{random.getrandbits(64):x}@corp.example"
        jwt = ".".join([b64url(b'{"alg":"HS256"}'), b64url(json.dumps({"sub": sub, "exp": 4102444800}).encode()),
                        b64url(random.randbytes(16))])
        out.append({
            "api_key": f"ak_{random.getrandbits(96):024x}",
            "card": luhn_complete("4", 16),
            "email": f"canary.{i}.{random.getrandbits(32):x}@example.org",
            "password": f"pw-{random.getrandbits(80):x}!",
            "jwt": jwt,
            "sub": sub,
        })
    return out


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type="application/json")


async def test_thousand_planted_values_never_leave_the_sensor(tmp_path: Path) -> None:
    logs = io.StringIO()
    configure_logging("debug", component="canary", stream=logs)
    backend = web.Application()
    backend.router.add_route("*", "/{tail:.*}", echo)
    backend_runner, backend_port = await serve(backend)
    collector_runner, collector_port = await serve(create_app(collector_settings(tmp_path / "collector.db")))
    collector = f"http://127.0.0.1:{collector_port}"
    runtime = SensorRuntime(SensorConfig(
        upstream=f"http://127.0.0.1:{backend_port}", listen="127.0.0.1:0", collector=collector,
        ingest_token=INGEST, window=1.0, state_dir=str(tmp_path / "sensor"), log_level="debug",
    ).validate())
    await runtime.start()
    planted = canaries(1000)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime.listen_port}") as client:
            for i, c in enumerate(planted):
                body = {"customer": {"email": c["email"], "card_number": c["card"]}, "password": c["password"]}
                async with client.post(
                    f"/accounts/{i}/payments", params={"api_key": c["api_key"]}, json=body,
                    headers={"Authorization": f"Bearer {c['jwt']}"},
                ) as resp:
                    assert resp.status == 200
    finally:
        await runtime.stop()

    async def all_ingested() -> bool:
        items = (await read_json(collector, "/api/v1/endpoints"))["items"]
        return sum(e["requests_30d"] for e in items) == len(planted)

    try:
        assert await wait_for(all_ingested, timeout=10)
        answers = ""
        for path in ("/api/v1/endpoints", "/api/v1/inventory", "/api/v1/sensors", "/api/v1/alerts", "/api/v1/apis"):
            answers += json.dumps(await read_json(collector, path))
        (endpoint,) = (await read_json(collector, "/api/v1/endpoints"))["items"]
        detail = await read_json(collector, f"/api/v1/endpoints/{endpoint['id']}")
        answers += json.dumps(detail)
    finally:
        await collector_runner.cleanup()
        await backend_runner.cleanup()
        configure_logging("info")

    # the values were really seen and classified: only their types came out
    found = {t["type"] for entries in endpoint["data_classification"].values() for t in entries}
    assert {"email", "credit_card", "password"} <= found
    assert endpoint["auth_schemes"] == {"api_key": len(planted), "jwt": len(planted)}

    stored = b"".join(p.read_bytes() for p in tmp_path.glob("collector.db*"))
    spool = b"".join(p.read_bytes() for p in (tmp_path / "sensor").rglob("*") if p.is_file())
    log_text = logs.getvalue()
    assert "request_analysed" in log_text  # debug lines were on
    values = [v for c in planted for k, v in c.items()]
    assert len(set(values)) >= 1000
    leaks = [v for v in values if v in log_text or v in answers or v.encode() in stored or v.encode() in spool]
    assert leaks == []
