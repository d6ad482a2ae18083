"""Data on its way to the collector: spool overflow during a long outage, and a sensor killed mid-traffic.

"Nothing lost silently": every request the backend served is either counted in the collector or in the
sensor's drop counters, and the collector shows the loss (``GET /api/v1/inventory``: the sensor's
``stats.dropped_*`` and the ``dropped`` totals). A sensor killed with SIGKILL loses at most the
window in progress (what it had not yet shipped or spooled), and the restart is visible in the
collector (same sensor id, a new ``started_at``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.app import create_app
from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.conftest import free_port
from tests.e2e.conftest import CountingBackend, serve, wait_for
from tests.hardening.conftest import size
from tests.hardening.test_collector_api import INGEST, READ, _settings, bearer

OUTAGE_SECONDS = size(6, 30)


async def _drive(url: str, seconds: float, sent: list[float], tag: str) -> None:
    """Sequential requests for ``seconds``; the time of each 2xx answer is appended to ``sent``."""
    async with aiohttp.ClientSession(url) as client:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            try:
                async with client.get(f"/items/{tag}{i}", headers={"Authorization": "Bearer opaque-value-1"}) as r:
                    await r.read()
                    if r.status == 200:
                        sent.append(time.monotonic())
            except aiohttp.ClientError:
                return  # the sensor is gone
            i += 1
            await asyncio.sleep(0.005)


async def read_json(url: str, path: str) -> Any:
    async with aiohttp.ClientSession(headers=bearer(READ)) as s, s.get(url + path) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _collector_total(url: str) -> int:
    """Sum of requests_30d over every endpoint (all pages)."""
    total, cursor = 0, None
    while True:
        page = await read_json(url, "/api/v1/endpoints?limit=500" + (f"&cursor={cursor}" if cursor else ""))
        total += sum(e["requests_30d"] for e in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return total


@pytest.mark.timeout(60 + 2 * OUTAGE_SECONDS)
async def test_spool_overflow_shortfall_equals_drop_counter(tmp_path: Path) -> None:
    """Collector away for OUTAGE_SECONDS with a tiny spool: batches are dropped oldest first; when the
    collector returns, collector total + sensor dropped_requests == requests served (exactly), and the
    inventory shows the drop for this sensor."""
    backend = CountingBackend()
    backend_runner, backend_port = await serve(backend.app)
    collector_port = free_port()
    cfg = SensorConfig(
        upstream=f"http://127.0.0.1:{backend_port}", listen="127.0.0.1:0",
        collector=f"http://127.0.0.1:{collector_port}", ingest_token=INGEST, window=1.0, api_name="spool",
        state_dir=str(tmp_path / "sensor"), spool_max_bytes=3000, queue_max_batches=1, ship_backoff_max=0.5,
        spec_sync_interval=0,
    ).validate()
    runtime = SensorRuntime(cfg)
    await runtime.start()
    sent: list[float] = []
    collector_runner = None
    try:
        await _drive(f"http://127.0.0.1:{runtime.listen_port}", OUTAGE_SECONDS, sent, "a")
        await asyncio.sleep(1.5)  # the last window closes and is spooled
        assert runtime.shipper.dropped_batches > 0, "the spool never overflowed: the test proves nothing"
        collector_runner, _ = await serve(create_app(_settings(f"sqlite:///{tmp_path / 'c.db'}")), collector_port)
        assert await runtime.shipper.flush(30)
    finally:
        await runtime.stop()
    collector = f"http://127.0.0.1:{collector_port}"
    try:
        served = sum(backend.served.values())
        assert served == len(sent)
        dropped = runtime.shipper.dropped_requests
        assert await _collector_total(collector) + dropped == served, (served, dropped)
        inventory = await read_json(collector, "/api/v1/inventory")
        (row,) = inventory["sensors"]
        assert row["stats"]["dropped_requests"] == dropped > 0
        assert row["stats"]["dropped_batches"] == runtime.shipper.dropped_batches
        assert inventory["dropped"]["dropped_requests"] == dropped
    finally:
        if collector_runner is not None:
            await collector_runner.cleanup()
        await backend_runner.cleanup()


@pytest.mark.timeout(120)
async def test_sensor_sigkill_loses_at_most_one_window_and_restart_is_visible(
    tmp_path: Path, sensor_factory: Any
) -> None:
    """SIGKILL during traffic: what the collector lacks is at most the requests of the last window (plus
    the flush interval) before the kill; after a restart with the same state directory the collector
    shows the same sensor with a new started_at and a higher last_seq."""
    backend = CountingBackend()
    backend_runner, backend_port = await serve(backend.app)
    collector_runner, collector_port = await serve(create_app(_settings(f"sqlite:///{tmp_path / 'c.db'}")))
    collector = f"http://127.0.0.1:{collector_port}"
    settings = {
        "upstream": f"http://127.0.0.1:{backend_port}", "collector": collector, "ingest_token": INGEST,
        "window": 1.0, "api_name": "killed", "log_level": "warning", "ship_backoff_max": 1.0,
    }
    try:
        sensor = sensor_factory("s", **settings).start()
        sent: list[float] = []
        traffic = asyncio.ensure_future(_drive(sensor.url, 60, sent, "k"))
        await asyncio.sleep(3.5)
        before = (await read_json(collector, "/api/v1/inventory"))["sensors"]
        assert len(before) == 1
        sensor.kill()
        killed_at = time.monotonic()
        await traffic
        sent_before_kill = len(sent)
        recent = sum(1 for t in sent if t > killed_at - 2.5)  # the open window + flush interval + shipping

        sensor = sensor_factory("s", **settings)  # same directory: same sensor id, same spool
        sensor.start()
        after_sent: list[float] = []
        await _drive(sensor.url, 2.0, after_sent, "r")
        sensor.stop()
        served = sum(backend.served.values())
        # a request in flight at the kill may have reached the backend without its answer reaching us
        assert 0 <= served - (sent_before_kill + len(after_sent)) <= 1

        async def settled() -> bool:
            return await _collector_total(collector) >= served - recent

        await wait_for(settled, timeout=10)
        total = await _collector_total(collector)
        lost = served - total
        print(f"served {served}, in collector {total}, lost {lost}, bound {recent}")
        assert 0 <= lost <= recent
        after = (await read_json(collector, "/api/v1/inventory"))["sensors"]
        assert len(after) == 1 and after[0]["id"] == before[0]["id"]
        assert after[0]["started_at"] > before[0]["started_at"]  # the restart is visible
        assert after[0]["last_seq"] > before[0]["last_seq"]
    finally:
        await collector_runner.cleanup()
        await backend_runner.cleanup()


