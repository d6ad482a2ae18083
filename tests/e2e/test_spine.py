"""The spine end to end: client -> sensor (inline) -> backend, summaries -> collector inventory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from sensor.app import SensorRuntime
from tests.e2e.conftest import CountingBackend, read_json, wait_for

JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsImlzcyI6Imh0dHBzOi8vbG9naW4uZXhhbXBsZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "c2lnbmF0dXJl"
)


def endpoint(items: list[dict[str, Any]], method: str, path: str) -> dict[str, Any]:
    found = [e for e in items if e["method"] == method and e["path"] == path]
    assert found, f"{method} {path} not in {[(e['method'], e['path']) for e in items]}"
    return found[0]


async def test_requests_appear_in_inventory_with_correct_fields_within_one_window(
    sensor: SensorRuntime, collector: str, backend: tuple[CountingBackend, str]
) -> None:
    counting, _ = backend
    base = f"http://127.0.0.1:{sensor.listen_port}"
    external = {"X-Forwarded-For": "81.2.69.160", "X-Forwarded-Proto": "https"}
    async with aiohttp.ClientSession(base) as client:
        for i in range(3):  # authenticated, from the internet
            async with client.get(f"/items/{100 + i}", headers={**external, "Authorization": f"Bearer {JWT}"}) as r:
                assert r.status == 200
        async with client.get("/items/7") as r:  # no credential, answered 401: the backend enforces auth
            assert r.status == 401
        for _ in range(2):  # no credential, answered 200, internal client
            async with client.get("/public/catalog") as r:
                assert r.status == 200
        async with client.get("/private/report", headers={"X-Api-Key": "report-key-1234567890"}) as r:
            assert r.status == 200
        async with client.get("/private/report", params={"apikey": "report-key-1234567890"}) as r:
            assert r.status == 403
    sent_at = time.monotonic()

    async def inventory_complete() -> bool:
        items = (await read_json(collector, "/api/v1/endpoints"))["items"]
        return sum(e["requests_30d"] for e in items) == 8

    # within one window (1 s) plus the shipper's flush cadence and one ingest
    assert await wait_for(inventory_complete, timeout=5.0)
    assert time.monotonic() - sent_at < 5.0
    items = (await read_json(collector, "/api/v1/endpoints"))["items"]

    item = endpoint(items, "GET", "/items/{id}")
    assert item["api"] == "e2e"
    assert item["requests_30d"] == 4
    assert item["authentication"] == "authenticated"
    assert item["auth_schemes"] == {"jwt": 3, "none": 1}
    assert item["external_traffic_observed"] is not None
    assert item["status"] == "active" and item["inactive_30d"] is False
    assert item["last_called"].endswith("Z") or item["last_called"].endswith("+00:00")

    catalog = endpoint(items, "GET", "/public/catalog")
    assert catalog["authentication"] == "unauthenticated"
    assert catalog["auth_schemes"] == {"none": 2}
    assert catalog["external_traffic_observed"] is None

    report = endpoint(items, "GET", "/private/report")
    assert report["auth_schemes"] == {"api_key": 2}
    assert report["authentication"] == "authenticated"

    detail = await read_json(collector, f"/api/v1/endpoints/{item['id']}")
    assert detail["id"] == item["id"] and detail["path"] == "/items/{id}"

    inventory = await read_json(collector, "/api/v1/inventory")
    assert inventory["counts"]["endpoints"] == 3
    assert inventory["counts"]["unauthenticated"] == 1
    assert inventory["counts"]["external"] == 1
    assert [s["name"] for s in inventory["sensors"]] == [sensor.info.name]
    assert sum(counting.served.values()) == 8


async def test_secrets_never_reach_the_collector(
    sensor: SensorRuntime, collector: str, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{sensor.listen_port}"
    secrets = ["report-key-1234567890", JWT, "alice@example.com"]
    async with aiohttp.ClientSession(base) as client:
        async with client.get("/items/1", headers={"Authorization": f"Bearer {JWT}"}) as r:
            assert r.status == 200
        async with client.get("/private/report", params={"api_key": secrets[0]}) as r:
            await r.read()

    async def shipped() -> bool:
        return sensor.shipper.shipped_batches >= 1

    assert await wait_for(shipped, timeout=5.0)
    for path in ("/api/v1/endpoints", "/api/v1/inventory", "/api/v1/sensors", "/api/v1/alerts"):
        text = str(await read_json(collector, path))
        for secret in secrets:
            assert secret not in text
    db_bytes = (tmp_path / "collector.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("collector.db*")
    )
    for secret in secrets:
        assert secret.encode() not in db_bytes
