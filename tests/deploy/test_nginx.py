"""The nginx recipes in examples/nginx, run for real: Debian's nginx on 127.0.0.1, a real backend, the
sensor and a real collector. Skipped when nginx is missing, except in CI (CI=true), where it fails."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import string
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.conftest import free_port
from tests.deploy.conftest import REPO, endpoints
from tests.e2e.conftest import INGEST, CountingBackend, serve, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
RECIPES = REPO / "examples" / "nginx"
JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsImlzcyI6Imh0dHBzOi8vbG9naW4uZXhhbXBsZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "c2lnbmF0dXJl"
)


@pytest.fixture
def nginx_binary() -> str:
    if NGINX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed: CI must install Debian's nginx (apt-get install nginx)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return NGINX


def render_recipe(name: str, tmp: Path, **placeholders: str) -> Path:
    """The recipe with its ${...} placeholders filled (as envsubst would), inside a minimal nginx.conf
    whose pid, logs and temp files all stay in ``tmp``."""
    recipe = string.Template((RECIPES / name).read_text()).safe_substitute(placeholders)
    directives = "\n".join(line for line in recipe.splitlines() if not line.lstrip().startswith("#"))
    assert "${" not in directives, "unfilled placeholder in the recipe"
    (tmp / "logs").mkdir()
    (tmp / "recipe.conf").write_text(recipe)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers would otherwise run as nobody
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/logs/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/recipe.conf;
}}
"""
    )
    return conf


async def wait_port(port: int, proc: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"nginx exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("nginx did not listen in time")


@contextlib.asynccontextmanager
async def run_nginx(binary: str, conf: Path, port: int) -> AsyncIterator[None]:
    prefix = conf.parent
    proc = await asyncio.create_subprocess_exec(
        binary, "-p", str(prefix), "-e", str(prefix / "logs" / "error.log"), "-c", str(conf), "-g", "daemon off;",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_port(port, proc)
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    errors = (prefix / "logs" / "error.log").read_text() if (prefix / "logs" / "error.log").exists() else ""
    assert "[emerg]" not in errors and "[alert]" not in errors, errors


@pytest.fixture
async def backend() -> AsyncIterator[tuple[CountingBackend, int]]:
    b = CountingBackend()
    runner, port = await serve(b.app)
    yield b, port
    await runner.cleanup()


async def start_sensor(tmp: Path, collector: str, **kw: str) -> SensorRuntime:
    cfg = SensorConfig(
        listen="127.0.0.1:0",
        collector=collector,
        ingest_token=INGEST,
        window=1.0,
        trusted_proxies=["127.0.0.1/32"],  # nginx's address: its X-Forwarded-For is believed
        api_name="shop",
        state_dir=str(tmp / "sensor"),
        **kw,
    ).validate()
    runtime = SensorRuntime(cfg)
    await runtime.start()
    return runtime


async def send_traffic(port: int) -> None:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
        for i in range(3):  # from the internet, authenticated
            headers = {"Authorization": f"Bearer {JWT}", "X-Forwarded-For": "81.2.69.160"}
            async with client.get(f"/items/{i + 1}?expand=owner", headers=headers) as r:
                assert r.status == 200 and (await r.json())["id"] == str(i + 1)
        async with client.post("/items", json={"name": "lamp", "price": 12}) as r:
            assert r.status == 201
        for _ in range(2):
            async with client.get("/public/catalog") as r:
                assert r.status == 200


async def test_nginx_mirror_recipe_feeds_the_inventory(
    tmp_path: Path, nginx_binary: str, backend: tuple[CountingBackend, int], collector_url: str
) -> None:
    counting, backend_port = backend
    sensor = await start_sensor(tmp_path, collector_url, mode="mirror")
    try:
        port = free_port()
        (tmp_path / "nginx").mkdir()
        conf = render_recipe(
            "mirror.conf.template", tmp_path / "nginx",
            LISTEN_PORT=f"127.0.0.1:{port}", APP_BACKEND=f"127.0.0.1:{backend_port}",
            APIWARD_MIRROR=f"127.0.0.1:{sensor.listen_port}",
        )
        async with run_nginx(nginx_binary, conf, port):
            await send_traffic(port)

            async def mirrored() -> bool:
                return sum(e["requests_30d"] for e in (await endpoints(collector_url)).values()) == 6

            assert await wait_for(mirrored, timeout=10.0)
    finally:
        await sensor.stop()

    assert sum(counting.served.values()) == 6  # the API served everything once; the mirror is a copy
    eps = await endpoints(collector_url)
    assert set(eps) == {("GET", "/items/{id}"), ("POST", "/items"), ("GET", "/public/catalog")}
    items = eps[("GET", "/items/{id}")]
    assert items["api"] == "shop" and items["requests_30d"] == 3
    assert items["auth_schemes"] == {"jwt": 3}
    # X-Forwarded-For from nginx reached the sensor: the client was on the internet
    assert items["external_traffic_observed"] is not None
    assert eps[("POST", "/items")]["auth_schemes"] == {"none": 1}
    catalog = eps[("GET", "/public/catalog")]
    assert catalog["requests_30d"] == 2 and catalog["external_traffic_observed"] is None


async def test_nginx_inline_recipe_feeds_the_inventory_and_fails_open(
    tmp_path: Path, nginx_binary: str, backend: tuple[CountingBackend, int], collector_url: str
) -> None:
    counting, backend_port = backend
    sensor = await start_sensor(tmp_path, collector_url, upstream=f"http://127.0.0.1:{backend_port}")
    port = free_port()
    (tmp_path / "nginx").mkdir()
    conf = render_recipe(
        "inline.conf.template", tmp_path / "nginx",
        LISTEN_PORT=f"127.0.0.1:{port}", APP_BACKEND=f"127.0.0.1:{backend_port}",
        APIWARD_INLINE=f"127.0.0.1:{sensor.listen_port}",
    )
    stopped = False
    try:
        async with run_nginx(nginx_binary, conf, port):
            await send_traffic(port)

            async def seen() -> bool:
                return sum(e["requests_30d"] for e in (await endpoints(collector_url)).values()) == 6

            assert await wait_for(seen, timeout=10.0)
            items = (await endpoints(collector_url))[("GET", "/items/{id}")]
            # inline, the sensor sees responses too: every call was answered 2xx with a credential
            assert items["authentication"] == "authenticated" and items["external_traffic_observed"] is not None

            # the sensor goes away: nginx's backup server keeps the API up
            await sensor.stop()
            stopped = True
            async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{port}/public/catalog") as r:
                assert r.status == 200
    finally:
        if not stopped:
            await sensor.stop()
    assert sum(counting.served.values()) == 7
