"""Dashboard fixtures: the collector fixtures, and for the browser tests a demo-seeded collector
(collector + demo API + sensor + demo traffic on 127.0.0.1) and Debian's chromium through Playwright.

The demo stack runs on its own event loop in a background thread: Playwright's sync API drives the
browser from the test thread, and the servers must keep answering while it waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.collector.conftest import (  # noqa: F401 - fixtures re-exported for the dashboard tests
    ADMIN_TOKEN,
    READ_TOKEN,
    TOKENS,
    api,
    db_url,
    pg_database,
    settings,
    sqlite_store,
    store,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
# The README's screenshots are refreshed only on request (APIWARD_UPDATE_SCREENSHOTS=1): page timestamps
# change on every run, and a test run should not leave tracked files modified.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("APIWARD_UPDATE_SCREENSHOTS") == "1"
    else ARTIFACTS / "readme"
)

DEMO_INGEST = "dash-ingest-token-0123456789"
DEMO_READ = "dash-read-token-0123456789ab"
DEMO_ADMIN = "dash-admin-token-0123456789a"
TRAFFIC_SECONDS = 6.0


@dataclass
class DemoStack:
    """A running demo: collector URL and a JSON reader with the read token."""

    url: str
    loop: asyncio.AbstractEventLoop
    runners: list[web.AppRunner] = field(default_factory=list)
    runtime: Any = None

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        request = urllib.request.Request(self.url + path + query, headers={"Authorization": f"Bearer {DEMO_READ}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def api_all(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self.api(path, {**(params or {}), "limit": "500", **({"cursor": cursor} if cursor else {})})
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items


async def _serve(stack: DemoStack, app: web.Application) -> int:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stack.runners.append(runner)
    return int(runner.addresses[0][1])


async def _start(stack: DemoStack, data_dir: Path) -> None:
    """The sequence of ``apiward.demo``: collector, spec import, demo API, sensor, traffic, flush."""
    from apiward.demo_api import DEMO_SPEC, build_demo_api
    from apiward.demo_traffic import run_traffic
    from collector.app import create_app
    from collector.settings import CollectorSettings, Role, Token
    from sensor.app import SensorRuntime
    from sensor.config import SensorConfig

    collector_settings = CollectorSettings(
        host="127.0.0.1",
        port=0,
        database_url=f"sqlite:///{data_dir / 'apiward.db'}",
        tokens=[
            Token(Role.INGEST, DEMO_INGEST, "dash-sensor"),
            Token(Role.READ, DEMO_READ, "dash-reader"),
            Token(Role.ADMIN, DEMO_ADMIN, "dash-admin"),
        ],
        log_level="warning",
    ).validate()
    port = await _serve(stack, create_app(collector_settings))
    stack.url = f"http://127.0.0.1:{port}"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {DEMO_ADMIN}"}) as session,
        session.post(stack.url + "/api/v1/specs", params={"api": "shop", "source": "demo-shop.json"},
                     json=DEMO_SPEC) as resp,
    ):
        assert resp.status == 201, await resp.text()
    api_port = await _serve(stack, build_demo_api())
    cfg = SensorConfig(
        upstream=f"http://127.0.0.1:{api_port}",
        listen="127.0.0.1:0",
        collector=stack.url,
        ingest_token=DEMO_INGEST,
        window=2.0,  # several windows in a few seconds: the charts get more than one column
        trusted_proxies=["127.0.0.1/32", "::1/128"],
        api_name="shop",
        state_dir=str(data_dir / "sensor"),
        sensor_name="dashboard-test-sensor",
        log_level="warning",
        spec_sync_interval=5.0,
    ).validate()
    stack.runtime = SensorRuntime(cfg)
    await stack.runtime.start()
    sync = stack.runtime.spec_sync
    for _ in range(200):  # the sensor pulls the spec's templates at start
        if sync is None or sync.loaded_operations:
            break
        await asyncio.sleep(0.05)
    await run_traffic(f"http://127.0.0.1:{stack.runtime.listen_port}", TRAFFIC_SECONDS, rate=80.0)
    stack.runtime.flush(force=True)
    assert await stack.runtime.shipper.flush(10), "the sensor did not deliver every batch"


async def _stop(stack: DemoStack) -> None:
    if stack.runtime is not None:
        await stack.runtime.stop()
    for runner in reversed(stack.runners):
        await runner.cleanup()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dashboard-demo", daemon=True)
    thread.start()
    stack = DemoStack(url="", loop=loop)

    def run(coro: Any, timeout: float) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(timeout)

    try:
        run(_start(stack, tmp_path_factory.mktemp("dashboard-demo")), 90)
        yield stack
    finally:
        run(_stop(stack), 30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium via Playwright; unavailable: FAIL under CI=true, skip locally."""
    try:
        from playwright.sync_api import sync_playwright

        manager = sync_playwright().start()
    except Exception as exc:
        _unavailable(f"Playwright cannot start: {exc}")
    try:
        try:
            instance = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:
            _unavailable(f"chromium at {CHROMIUM} cannot be launched: {str(exc).splitlines()[0]}")
        yield instance
        instance.close()
    finally:
        manager.stop()


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


__all__ = [
    "ADMIN_TOKEN", "ARTIFACTS", "DEMO_ADMIN", "DEMO_INGEST", "DEMO_READ", "READ_TOKEN", "SCREENSHOTS", "TOKENS",
    "DemoStack",
]
