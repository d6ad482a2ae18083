"""Backend refused, hung, resetting or answering garbage: 502/504 within the configured timeouts, and
a circuit breaker that fails fast while the backend cannot be connected to.

"Nothing lost" here: every request gets exactly one answer and one logged exchange carrying the
failure kind. "Clear error": 502 (refused, reset, malformed) or 504 (connect/read timeout) as a
problem document with the request id, never later than the configured timeout plus a small slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from sensor.config import SensorConfig
from sensor.proxy import CircuitBreaker, ProxyCounters
from tests.conftest import free_port
from tests.sensor.proxy_helpers import RecordingSink, running_proxy, unanswered_port

SLACK = 1.0  # seconds allowed on top of a configured timeout (2 shared cores)
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 0.8

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_backend(behaviour: Behaviour) -> AsyncIterator[int]:
    port = free_port()
    server = await asyncio.start_server(behaviour, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)


async def _read_head(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        await reader.readuntil(b"\r\n\r\n")


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close -> RST
    writer.transport.abort()


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_head(reader)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)
    writer.close()


async def reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_head(reader)
    _reset(writer)


async def reset_on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _reset(writer)


def answer(raw: bytes, *, close: bool = True) -> Behaviour:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(raw)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        if close:
            writer.close()
        else:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)
            writer.close()

    return behaviour


CASES: list[tuple[str, Behaviour, int, str]] = [
    ("hung_after_request", hang, 504, "read_timeout"),
    ("reset_after_request", reset_after_request, 502, "*"),
    ("reset_on_accept", reset_on_accept, 502, "*"),
    ("closed_without_answer", answer(b""), 502, "disconnected"),
    ("garbage_status_line", answer(b"HTTX/9 abc\r\n\r\n"), 502, "bad_response"),
    ("invalid_content_length", answer(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), 502, "bad_response"),
    ("two_content_lengths", answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
     502, "bad_response"),
    ("nul_in_header", answer(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"), 502, "bad_response"),
    ("header_too_long", answer(b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 100_000 + b"\r\nContent-Length: 0\r\n\r\n"),
     502, "bad_response"),
    ("short_body_then_silence", answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", close=False),
     504, "read_timeout"),
    ("short_body_then_close", answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"), 502, "*"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "behaviour", "status", "kind"), CASES, ids=[c[0] for c in CASES])
async def test_backend_fault_answered_within_timeout(name: str, behaviour: Behaviour, status: int, kind: str) -> None:
    """One 502/504 problem answer per request within the configured read timeout + slack; the
    exchange is logged with the failure kind; the sensor keeps serving (a second request gets the
    same clear answer, not a hang)."""
    sink = RecordingSink()
    async with fake_backend(behaviour) as backend_port:
        cfg = SensorConfig(
            upstream=f"http://127.0.0.1:{backend_port}", connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT
        )
        async with running_proxy(cfg, sink) as (port, _), aiohttp.ClientSession() as client:
            for attempt in range(2):
                t0 = time.monotonic()
                async with client.get(f"http://127.0.0.1:{port}/x", headers={"X-Request-ID": f"rid-{attempt}"}) as r:
                    body = await r.json(content_type=None)
                    elapsed = time.monotonic() - t0
                    assert r.status == status, body
                    assert r.headers["X-Request-ID"] == f"rid-{attempt}" and body["request_id"] == f"rid-{attempt}"
                assert elapsed < READ_TIMEOUT + SLACK, elapsed
            exchanges = await sink.wait_for(2)
    assert [e.status for e in exchanges] == [status, status]
    if kind != "*":
        assert exchanges[0].upstream_error == kind, exchanges[0].upstream_error
    else:
        assert exchanges[0].upstream_error


async def test_connect_timeout_is_a_504_within_connect_timeout() -> None:
    """A backend whose handshake never completes: 504 after connect_timeout, not read_timeout."""
    sink = RecordingSink()
    with unanswered_port() as dead:
        cfg = SensorConfig(upstream=f"http://127.0.0.1:{dead}", connect_timeout=CONNECT_TIMEOUT, read_timeout=30)
        async with running_proxy(cfg, sink) as (port, counters), aiohttp.ClientSession() as client:
            t0 = time.monotonic()
            async with client.get(f"http://127.0.0.1:{port}/x") as r:
                assert r.status == 504
            assert time.monotonic() - t0 < CONNECT_TIMEOUT + SLACK
    assert counters.upstream_timeouts_504 == 1


async def test_circuit_breaker_opens_fails_fast_and_recovers() -> None:
    """After N consecutive connect failures the sensor answers 502 at once (no connect attempt), counted
    in ProxyCounters.circuit_open_502; after the cool-down one probe goes through and, the backend
    being back, traffic flows again."""
    dead_port = free_port()
    breaker = CircuitBreaker(threshold=3, cooldown=0.6)
    counters = ProxyCounters()
    sink = RecordingSink()
    cfg = SensorConfig(upstream=f"http://127.0.0.1:{dead_port}", connect_timeout=CONNECT_TIMEOUT)
    async with (
        running_proxy(cfg, sink, counters, breaker=breaker) as (port, _),
        aiohttp.ClientSession() as client,
    ):
        url = f"http://127.0.0.1:{port}/x"
        for _ in range(3):
            async with client.get(url) as r:
                assert r.status == 502
        assert counters.upstream_errors_502 == 3 and counters.circuit_opened == 1 and breaker.is_open
        for _ in range(5):
            async with client.get(url) as r:
                assert r.status == 502
                assert "circuit breaker" in (await r.json(content_type=None))["detail"]
        assert counters.circuit_open_502 == 5 and counters.upstream_errors_502 == 3  # no connect attempted
        assert [e.upstream_error for e in sink.exchanges[-5:]] == ["circuit_open"] * 5

        async def back(_: web.Request) -> web.Response:
            return web.Response(text="back")

        app = web.Application()
        app.router.add_get("/x", back)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", dead_port).start()
        try:
            async with client.get(url) as r:
                assert r.status == 502  # still cooling down
            await asyncio.sleep(0.7)
            async with client.get(url) as r:
                assert r.status == 200 and await r.text() == "back"  # the probe closes the breaker
            assert not breaker.is_open
            async with client.get(url) as r:
                assert r.status == 200
        finally:
            await runner.cleanup()


def test_circuit_breaker_half_open_lets_one_probe_through() -> None:
    """While a probe is in flight the others still fail fast; a failed probe re-opens for a new cool-down."""
    now = [0.0]
    b = CircuitBreaker(threshold=2, cooldown=10.0, clock=lambda: now[0])
    assert b.allow() and not b.connect_failed()
    assert b.allow() and b.connect_failed()  # opened
    assert not b.allow()
    now[0] = 10.5
    assert b.allow()  # the probe
    assert not b.allow()  # everyone else while it runs
    assert b.connect_failed()  # probe failed: re-opened
    assert not b.allow()
    now[0] = 21.0
    assert b.allow()
    b.connected()
    assert b.allow() and b.allow() and not b.is_open
    off = CircuitBreaker(threshold=0)
    for _ in range(10):
        off.connect_failed()
    assert off.allow()
