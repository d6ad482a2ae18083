"""Running the collector with exporters in a test, and feeding it alerts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from aiohttp.test_utils import TestClient

from collector.app import create_app
from collector.export.config import parse
from collector.settings import CollectorSettings, Role
from collector.store import Store
from sensor.events import AlertEvent, encode_batch
from tests.collector.conftest import bearer
from tests.collector.factories import alert, batch

Client = TestClient[Any, Any]
FAST = "delivery: {poll_seconds: 0.05, backoff_initial_seconds: 0.05, backoff_max_seconds: 0.2, max_attempts: 50}\n"


def with_exporters(settings: CollectorSettings, exporters_yaml: str, **changes: Any) -> CollectorSettings:
    config = parse(FAST + exporters_yaml, "test-exporters.yaml", {})
    return dataclasses.replace(settings, exporters=config, recommendation_check_seconds=0, **changes)


async def start(aiohttp_client: Any, settings: CollectorSettings, store: Store) -> Client:
    client: Client = await aiohttp_client(create_app(settings, store))
    return client


def alerts(n: int, *, prefix: str = "198.51.100.", **kwargs: Any) -> list[AlertEvent]:
    """``n`` alerts of distinct groups (one client IP each)."""
    return [alert(ip=f"{prefix}{i}", **kwargs) for i in range(n)]


async def ingest(client: Client, events: list[AlertEvent]) -> None:
    headers = {**bearer(Role.INGEST), "Content-Type": "application/json"}
    resp = await client.post("/api/v1/events", data=encode_batch(batch([], events)), headers=headers)
    assert resp.status == 200, await resp.text()


async def alert_ids(client: Client) -> set[str]:
    resp = await client.get("/api/v1/alerts", params={"limit": "500"}, headers=bearer(Role.READ))
    return {a["id"] for a in (await resp.json())["items"]}


async def metric(client: Client, name: str, exporter: str) -> float:
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(f'{name}{{exporter="{exporter}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for {exporter} not on /metrics")


async def wait_metric(client: Client, name: str, exporter: str, value: float, timeout: float = 10.0) -> None:
    """Counters move right after the receiver has the data (the outbox row is deleted first)."""
    async with asyncio.timeout(timeout):
        while await metric(client, name, exporter) != value:
            await asyncio.sleep(0.05)


def json_bodies(requests: list[tuple[dict[str, str], bytes]]) -> list[Any]:
    out: list[Any] = []
    for _, body in requests:
        value = json.loads(body)
        out.extend(value if isinstance(value, list) else [value])
    return out
