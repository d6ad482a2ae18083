"""``mitmdump -s sensor/mitm_addon.py``: traffic through a real mitmproxy reaches the collector."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from sensor.config import ConfigError
from sensor.mitm_addon import config_from_options
from sensor.pipeline import default_api_name
from tests.conftest import free_port
from tests.deploy.conftest import REPO, endpoints
from tests.e2e.conftest import INGEST, CountingBackend, serve, wait_for

MITMDUMP = Path(sys.executable).with_name("mitmdump")
JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsImlzcyI6Imh0dHBzOi8vbG9naW4uZXhhbXBsZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "c2lnbmF0dXJl"
)

needs_mitmdump = pytest.mark.skipif(not MITMDUMP.exists(), reason="mitmproxy is not installed (extra 'mitm')")


def test_options_map_onto_the_sensor_config(tmp_path: Path) -> None:
    options = SimpleNamespace(
        apiward_collector="http://collector:8000", apiward_api_name="", apiward_window=5,
        apiward_trusted_proxies="10.0.0.0/8", apiward_internal_cidrs="", apiward_state_dir=str(tmp_path),
        apiward_sensor_name="", apiward_inspect_bytes=1024, mode=["reverse:http://orders.internal:9000"],
    )
    cfg = config_from_options(options, environ={"APIWARD_INGEST_TOKEN": INGEST, "APIWARD_WINDOW": "30"})
    assert cfg.collector == "http://collector:8000" and cfg.ingest_token == INGEST
    assert cfg.window == 5.0  # the option wins over the environment
    assert cfg.trusted_proxies == ["10.0.0.0/8"] and cfg.inspect_bytes == 1024
    # in reverse-proxy mode the upstream names the API, as --upstream does for the sensor
    assert default_api_name(cfg) == "orders.internal"
    with pytest.raises(ConfigError, match="window"):
        config_from_options(SimpleNamespace(**{**vars(options), "apiward_window": 0}), environ={})


async def wait_port(port: int, proc: asyncio.subprocess.Process, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"mitmdump exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.1)
    raise AssertionError("mitmdump did not listen in time")


@pytest.fixture
async def backend_url() -> AsyncIterator[tuple[CountingBackend, str]]:
    backend = CountingBackend()
    runner, port = await serve(backend.app)
    yield backend, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@needs_mitmdump
async def test_mitmdump_reverse_proxy_feeds_the_collector(
    tmp_path: Path, collector_url: str, backend_url: tuple[CountingBackend, str]
) -> None:
    backend, upstream = backend_url
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(MITMDUMP), "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1", "--listen-port", str(port),
        "--set", f"confdir={tmp_path / 'mitm'}",  # its CA and settings stay in the test's directory
        "-s", str(REPO / "sensor" / "mitm_addon.py"),
        "--set", f"apiward_collector={collector_url}",
        "--set", "apiward_window=1",
        "--set", "apiward_api_name=mitm-e2e",
        "--set", f"apiward_state_dir={tmp_path / 'state'}",
        "--quiet",
        cwd=tmp_path,
        env={**os.environ, "APIWARD_INGEST_TOKEN": INGEST},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_port(port, proc)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            for i in range(3):
                async with client.get(f"/items/{i + 1}", headers={"Authorization": f"Bearer {JWT}"}) as r:
                    assert r.status == 200 and (await r.json())["id"] == str(i + 1)  # traffic unchanged
            async with client.post("/items", json={"name": "x"}) as r:
                assert r.status == 201
            async with client.get("/private/report", headers={"X-Api-Key": "report-key-1234567890"}) as r:
                assert r.status == 200

        async def seen() -> bool:
            return sum(e["requests_30d"] for e in (await endpoints(collector_url)).values()) == 5

        assert await wait_for(seen, timeout=15.0)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        output = (await proc.stdout.read()).decode(errors="replace") if proc.stdout else ""
    assert "Traceback" not in output, output
    eps = await endpoints(collector_url)
    items = eps[("GET", "/items/{id}")]
    assert items["api"] == "mitm-e2e" and items["requests_30d"] == 3 and items["auth_schemes"] == {"jwt": 3}
    assert eps[("POST", "/items")]["auth_schemes"] == {"none": 1}
    assert eps[("GET", "/private/report")]["auth_schemes"] == {"api_key": 1}
    assert sum(backend.served.values()) == 5
