"""End-to-end fixtures: a real collector, a counting backend and a sensor, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.app import create_app
from collector.settings import CollectorSettings, Role, Token
from sensor.app import SensorRuntime
from sensor.config import SensorConfig

INGEST = "e2e-ingest-token-0123456789"
READ = "e2e-read-token-0123456789ab"
ADMIN = "e2e-admin-token-0123456789a"


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])


class CountingBackend:
    """A backend that counts what it served per (method, endpoint template).

    ``request_ids`` keeps, in order, the ``X-Request-ID`` header (the sensor's id for the exchange; ``""``
    when absent) with the method and template of every request served, for per-request accounting.
    """

    def __init__(self) -> None:
        self.served: Counter[tuple[str, str]] = Counter()
        self.request_ids: list[tuple[str, str, str]] = []
        self.app = web.Application()
        r = self.app.router
        r.add_get("/items/{item_id}", self._item)
        r.add_post("/items", self._create)
        r.add_get("/public/catalog", self._catalog)
        r.add_get("/private/report", self._report)

    def _count(self, request: web.Request, template: str) -> None:
        self.served[(request.method, template)] += 1
        self.request_ids.append((request.headers.get("X-Request-ID", ""), request.method, template))

    async def _item(self, request: web.Request) -> web.Response:
        if "Authorization" not in request.headers:
            self._count(request, "/items/{id}")
            return web.json_response({"title": "unauthorized"}, status=401)
        self._count(request, "/items/{id}")
        return web.json_response({"id": request.match_info["item_id"], "name": "thing"})

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._count(request, "/items")
        return web.json_response({"id": 1, **body}, status=201)

    async def _catalog(self, request: web.Request) -> web.Response:
        self._count(request, "/public/catalog")
        return web.json_response({"items": [1, 2, 3]})

    async def _report(self, request: web.Request) -> web.Response:
        self._count(request, "/private/report")
        if request.headers.get("X-Api-Key") != "report-key-1234567890":
            return web.json_response({"title": "forbidden"}, status=403)
        return web.json_response({"rows": 3})


def collector_settings(db: Path, port: int = 0) -> CollectorSettings:
    return CollectorSettings(
        host="127.0.0.1",
        port=port,
        database_url=f"sqlite:///{db}",
        tokens=[
            Token(Role.INGEST, INGEST, "e2e-sensor"),
            Token(Role.READ, READ, "e2e-reader"),
            Token(Role.ADMIN, ADMIN, "e2e-admin"),
        ],
        log_level="warning",
    ).validate()


async def read_json(collector_url: str, path: str, params: dict[str, str] | None = None) -> Any:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {READ}"}) as session,
        session.get(collector_url + path, params=params) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return await predicate()


@pytest.fixture
async def backend() -> AsyncIterator[tuple[CountingBackend, str]]:
    b = CountingBackend()
    runner, port = await serve(b.app)
    yield b, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[str]:
    runner, port = await serve(create_app(collector_settings(tmp_path / "collector.db")))
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def sensor(
    tmp_path: Path, backend: tuple[CountingBackend, str], collector: str
) -> AsyncIterator[SensorRuntime]:
    """An inline sensor in front of the counting backend, shipping to the collector, 1 s windows;
    127.0.0.1 is a trusted hop so tests can play internet clients with X-Forwarded-For."""
    _, backend_url = backend
    cfg = SensorConfig(
        upstream=backend_url,
        listen="127.0.0.1:0",
        collector=collector,
        ingest_token=INGEST,
        window=1.0,
        trusted_proxies=["127.0.0.1/32"],
        api_name="e2e",
        state_dir=str(tmp_path / "sensor"),
    ).validate()
    runtime = SensorRuntime(cfg)
    await runtime.start()
    yield runtime
    await runtime.stop()

