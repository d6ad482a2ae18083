"""Nothing lost: the collector is killed during traffic and restarted; counts still add up exactly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.conftest import free_port
from tests.e2e.conftest import ADMIN, INGEST, READ, CountingBackend, read_json, wait_for

OUTAGE_SECONDS = float(os.environ.get("APIWARD_TEST_OUTAGE_SECONDS", "30"))


class CollectorProcess:
    """``python -m collector serve`` as a real process that can be killed and restarted."""

    def __init__(self, db: Path, port: int) -> None:
        self.db, self.port = db, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "APIWARD_INGEST_TOKENS": INGEST,
            "APIWARD_READ_TOKENS": READ,
            "APIWARD_ADMIN_TOKENS": ADMIN,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "--listen", f"127.0.0.1:{self.port}",
             "--database", f"sqlite:///{self.db}", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        import socket

        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else b""
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("collector did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # no graceful shutdown: a crash
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[CollectorProcess]:
    proc = CollectorProcess(tmp_path / "collector.db", free_port())
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE_SECONDS + 120)
async def test_collector_killed_and_restarted_counts_equal_backend(
    tmp_path: Path, backend: tuple[CountingBackend, str], collector_process: CollectorProcess
) -> None:
    counting, backend_url = backend
    cfg = SensorConfig(
        upstream=backend_url,
        listen="127.0.0.1:0",
        collector=collector_process.url,
        ingest_token=INGEST,
        window=1.0,
        api_name="outage",
        state_dir=str(tmp_path / "sensor"),
        ship_backoff_max=2.0,
    ).validate()
    runtime = SensorRuntime(cfg)
    await runtime.start()
    sent = 0
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime.listen_port}") as client:

            async def traffic(seconds: float) -> None:
                nonlocal sent
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    i = sent
                    if i % 3 == 0:
                        req = client.get(f"/items/{i}", headers={"Authorization": "Bearer opaque-token-value"})
                    elif i % 3 == 1:
                        req = client.get("/public/catalog")
                    else:
                        req = client.post("/items", json={"name": f"n{i}"})
                    async with req as resp:
                        assert resp.status in (200, 201)
                    sent += 1
                    await asyncio.sleep(0.01)

            await traffic(3.0)
            collector_process.kill()
            await traffic(OUTAGE_SECONDS)
            assert runtime.shipper.pending_batches > 0  # the outage was real: batches waited
            collector_process.start()
            await traffic(3.0)
    finally:
        await runtime.stop()  # closes the last window and flushes

    served = sum(counting.served.values())
    assert served == sent > 100

    async def all_counted() -> bool:
        items = (await read_json(collector_process.url, "/api/v1/endpoints"))["items"]
        return sum(e["requests_30d"] for e in items) >= served

    assert await wait_for(all_counted, timeout=30.0)
    items = (await read_json(collector_process.url, "/api/v1/endpoints"))["items"]
    in_collector = {(e["method"], e["path"]): e["requests_30d"] for e in items}
    assert in_collector == dict(counting.served)
    inventory = await read_json(collector_process.url, "/api/v1/inventory")
    (sensor_row,) = inventory["sensors"]
    assert sensor_row["stats"]["dropped_requests"] == 0
