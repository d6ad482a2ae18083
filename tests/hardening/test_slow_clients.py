"""Slow clients beside normal traffic, against the real sensor process (``python -m sensor.cli``).

Slowloris (headers trickled one line a second), slow POST (headers, a few body bytes, then silence)
and slow readers (download a large response, never read). Sizes: 100 slowloris connections in CI,
500 with APIWARD_HARDENING_FULL=1.

"Nothing lost": every normal request during the attack is answered 200, and its p99 latency stays
within a bounded ratio of the same traffic measured without the attack, in this run. "Clear error":
slowloris connections are closed at the keep-alive timeout (aiohttp's keep-alive timer also bounds
an incomplete request head), slow POSTs get a 408 at ``client_body_timeout``, slow readers are cut
after ``client_body_timeout`` of a blocked write; afterwards the sensor's open file descriptors
(/proc/<pid>/fd) return to their baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import free_port
from tests.hardening.conftest import PyProcess, fd_count, size

TIMEOUT = 3.0  # keepalive_timeout and client_body_timeout of the sensor under test
SLACK = 2.5
LORIS = size(100, 500)
SLOW_POSTS = size(10, 50)
SLOW_READERS = size(5, 20)
NORMAL_REQUESTS = size(300, 1000)


@pytest.fixture
def backend() -> Iterator[str]:
    port = free_port()
    proc = PyProcess("tests.hardening.backend", str(port), port=port)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


async def normal_traffic(url: str, n: int, workers: int = 4) -> list[float]:
    """n GETs over ``workers`` keep-alive connections; per-request latency in seconds."""
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=workers)) as session:

        async def worker(k: int) -> None:
            for i in range(k, n, workers):
                t0 = time.perf_counter()
                async with session.get(f"{url}/api/items/{i}") as resp:
                    await resp.read()
                    assert resp.status == 200
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker(k) for k in range(workers)))
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def _until_closed(reader: asyncio.StreamReader, t0: float) -> tuple[float, bytes]:
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            data += chunk[:200] if len(data) < 200 else b""
    return time.monotonic() - t0, data


async def loris(port: int) -> tuple[float, bytes]:
    # The sensor's timer starts when it accepts the connection, which may be before this coroutine
    # runs again after connecting (100 of them start at once): t0 is taken before connecting.
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/items/1 HTTP/1.1\r\nHost: x\r\n")
    closed = asyncio.ensure_future(_until_closed(reader, t0))
    i = 0
    with contextlib.suppress(ConnectionError):
        while not closed.done() and time.monotonic() - t0 < TIMEOUT + SLACK + 5:
            writer.write(b"X-Slow-%d: y\r\n" % i)
            i += 1
            await asyncio.wait({closed}, timeout=1.0)
    writer.close()
    return await closed


async def slow_post(port: int) -> tuple[float, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    writer.write(b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
    result = await asyncio.wait_for(_until_closed(reader, t0), TIMEOUT + SLACK + 10)
    writer.close()
    return result


async def slow_reader(port: int) -> tuple[float, bytes]:
    # A tiny receive buffer and no reads: the sensor's writes block once the socket buffers are full.
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    t0 = time.monotonic()
    writer.write(b"GET /blob?size=268435456 HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(TIMEOUT + SLACK + 2)  # read nothing meanwhile
    # Now drain: a cut connection ends (EOF or reset) well short of the 256 MiB announced.
    total = 0
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(10):
            while chunk := await reader.read(1 << 20):
                total += len(chunk)
    writer.close()
    return time.monotonic() - t0, b"closed" if total < 268435456 else b"complete"


@pytest.mark.timeout(120)
async def test_slow_clients_beside_normal_traffic(sensor_factory: Any, backend: str, tmp_path: Path) -> None:
    """See the module docstring: p99 ratio, timeouts honoured, 408 for slow POSTs, fds back to baseline."""
    sensor = sensor_factory(
        upstream=backend, keepalive_timeout=TIMEOUT, client_body_timeout=TIMEOUT, log_level="warning",
        upstream_keepalive_timeout=1.0,
    ).start()
    url = sensor.url
    await normal_traffic(url, 100)  # warm-up: pools, caches, route templates
    await asyncio.sleep(TIMEOUT + 1.5)  # idle client and upstream connections close
    serving = sensor.serving_pid()  # with the analysis process, the child holds the connections
    fd_baseline = fd_count(serving)

    quiet = await normal_traffic(url, NORMAL_REQUESTS)

    attack = [asyncio.ensure_future(loris(sensor.port)) for _ in range(LORIS)]
    attack += [asyncio.ensure_future(slow_post(sensor.port)) for _ in range(SLOW_POSTS)]
    readers = [asyncio.ensure_future(slow_reader(sensor.port)) for _ in range(SLOW_READERS)]
    await asyncio.sleep(0.5)
    assert fd_count(serving) >= fd_baseline + LORIS  # the attack connections are really open
    loaded = await normal_traffic(url, NORMAL_REQUESTS)
    results = await asyncio.gather(*attack)
    reader_results = await asyncio.gather(*readers)

    ratio = p99(loaded) / max(p99(quiet), statistics.median(quiet) * 2)
    print(f"p99 quiet {p99(quiet) * 1000:.2f} ms, under attack {p99(loaded) * 1000:.2f} ms, ratio {ratio:.2f}")
    assert ratio < 6.0, ratio

    loris_times = [t for t, _ in results[:LORIS]]
    assert all(TIMEOUT - 0.3 <= t <= TIMEOUT + SLACK for t in loris_times), (min(loris_times), max(loris_times))
    for t, data in results[LORIS:]:
        assert data.startswith(b"HTTP/1.1 408"), data
        assert TIMEOUT - 0.3 <= t <= TIMEOUT + SLACK, t
    assert all(data == b"closed" for _, data in reader_results), reader_results

    deadline = time.monotonic() + 15
    while fd_count(serving) > fd_baseline + 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    assert fd_count(serving) <= fd_baseline + 2, (fd_count(serving), fd_baseline)
    assert sensor.proc.poll() is None
