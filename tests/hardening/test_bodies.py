"""Large bodies and compression bombs through the real sensor process (detect mode, all analysis on).

Sizes: 32 MiB bodies in CI, 100 MiB with APIWARD_HARDENING_FULL=1. Memory is the sensor process's
RSS sampled every 20 ms from /proc; the bound is fixed (it does not grow with the body size).

"Nothing lost": the SHA-256 of every body is the same at both ends (bytes pass unchanged, compressed
bodies are not inflated, not re-encoded). "Clear error": with a body cap, a request whose declared
length is over it gets a 413 problem document and the backend sees no request at all.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import free_port
from tests.hardening.backend import BOMB_INFLATED, blob_sha256, gzip_bomb
from tests.hardening.conftest import PyProcess, rss_bytes, size
from tests.sensor.proxy_helpers import RssSampler

MIB = 1024 * 1024
BODY = size(32, 100) * MIB
RSS_BOUND = 40 * MIB  # growth over the idle sensor's RSS, for any body size
BLOCK = 256 * 1024


@pytest.fixture
def backend() -> Iterator[str]:
    port = free_port()
    proc = PyProcess("tests.hardening.backend", str(port), port=port)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def _block(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest() * (BLOCK // 32)


async def _upload_body(n: int) -> AsyncIterator[bytes]:
    for i in range(n // BLOCK):
        yield _block(i)


def _expected_upload(n: int) -> str:
    h = hashlib.sha256()
    for i in range(n // BLOCK):
        h.update(_block(i))
    return h.hexdigest()


async def _warm_up(session: aiohttp.ClientSession, url: str) -> None:
    """A few small requests first, so the baseline includes what the first requests set up in both
    of the sensor's processes (pools, the analysis's lazily built tables): the bound is about bodies."""
    for i in range(3):
        async with session.post(f"{url}/upload", json={"id": i, "email": "a@example.com"}) as r:
            assert r.status == 200
    await asyncio.sleep(0.5)  # the analysis process has looked at them


async def _stats(backend: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as s, s.get(f"{backend}/stats") as r:
        result: dict[str, int] = await r.json()
        return result


@pytest.mark.timeout(180)
async def test_large_bodies_checksums_and_bounded_memory(sensor_factory: Any, backend: str) -> None:
    """Upload and download of BODY bytes: equal SHA-256 end to end, sensor RSS growth < RSS_BOUND."""
    sensor = sensor_factory(upstream=backend, log_level="warning", read_timeout=60).start()
    timeout = aiohttp.ClientTimeout(total=150)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        async with session.get(f"{sensor.url}/api/items/1") as r:  # warm-up
            assert r.status == 200
        baseline = sum(rss_bytes(pid) for pid in sensor.pids())
        with RssSampler(*sensor.pids()) as sampler:
            async with session.post(f"{sensor.url}/upload", data=_upload_body(BODY)) as r:
                assert await r.json() == {"size": BODY, "sha256": _expected_upload(BODY)}
            got, n = hashlib.sha256(), 0
            async with session.get(f"{sensor.url}/blob", params={"size": str(BODY)}) as r:
                assert r.status == 200 and r.headers["Content-Length"] == str(BODY)
                async for chunk in r.content.iter_chunked(BLOCK):
                    got.update(chunk)
                    n += len(chunk)
            assert n == BODY and got.hexdigest() == blob_sha256(BODY)
    grown = sampler.peak - baseline
    print(f"sensor RSS baseline {baseline / MIB:.1f} MiB, peak {sampler.peak / MIB:.1f} MiB, bodies {BODY // MIB} MiB")
    assert grown < RSS_BOUND, f"grew {grown / MIB:.1f} MiB"


async def test_body_cap_413_before_any_byte_goes_upstream(sensor_factory: Any, backend: str) -> None:
    """Content-Length over max_body_bytes: 413 problem document at once, the backend sees no request;
    a body under the cap on the next connection is served."""
    sensor = sensor_factory(upstream=backend, log_level="warning", max_body_bytes=MIB).start()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{sensor.url}/upload", data=b"x" * (8 * MIB), headers={"Content-Length": str(8 * MIB)}
        ) as r:
            assert r.status == 413
            doc = await r.json(content_type="application/problem+json")
            assert doc["status"] == 413 and str(MIB) in doc["detail"]
        assert "/upload" not in await _stats(backend)
        async with session.post(f"{sensor.url}/upload", data=b"y" * MIB) as r:
            assert r.status == 200 and (await r.json())["size"] == MIB


@pytest.mark.timeout(120)
async def test_gzip_bomb_response_passes_unchanged_and_is_not_inflated(sensor_factory: Any, backend: str) -> None:
    """A 256 MiB-inflated gzip response with Content-Encoding: gzip: the client gets the compressed bytes
    exactly as the backend sent them, and the sensor's analysis does not inflate them (RSS growth
    stays far below the inflated size; the classifier skips encoded bodies)."""
    sensor = sensor_factory(upstream=backend, log_level="warning").start()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(f"{backend}/bomb") as r:
            direct = await r.read()
        await _warm_up(session, sensor.url)
        baseline = sum(rss_bytes(pid) for pid in sensor.pids())
        with RssSampler(*sensor.pids()) as sampler:
            for _ in range(3):
                async with session.get(f"{sensor.url}/bomb") as r:
                    assert r.headers["Content-Encoding"] == "gzip"
                    assert await r.read() == direct
    assert len(direct) < BOMB_INFLATED // 100
    assert sampler.peak - baseline < RSS_BOUND, (sampler.peak - baseline) / MIB


@pytest.mark.timeout(120)
async def test_gzip_bomb_request_passes_unchanged(sensor_factory: Any, backend: str) -> None:
    """A gzip bomb as a request body (Content-Encoding: gzip, declared JSON): the backend receives the
    compressed bytes unchanged (same SHA-256), the sensor neither inflates nor refuses it."""
    bomb = gzip_bomb(128 * MIB)
    assert gzip.GzipFile(fileobj=io.BytesIO(bomb)).read(16) == b"\0" * 16
    sensor = sensor_factory(upstream=backend, log_level="warning").start()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        await _warm_up(session, sensor.url)
        baseline = sum(rss_bytes(pid) for pid in sensor.pids())
        with RssSampler(*sensor.pids()) as sampler:
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            async with session.post(f"{sensor.url}/upload", data=bomb, headers=headers) as r:
                assert await r.json() == {"size": len(bomb), "sha256": hashlib.sha256(bomb).hexdigest()}
    assert sampler.peak - baseline < RSS_BOUND
