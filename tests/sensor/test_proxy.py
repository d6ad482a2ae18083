"""Functional tests of the inline proxy: real sockets on 127.0.0.1, real aiohttp upstreams, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from sensor.config import SensorConfig
from sensor.exchange import Exchange
from sensor.http_common import c_parser_in_use, sane_request_id, split_target
from sensor.proxy import ProxyCounters, build_proxy_app
from tests.conftest import free_port
from tests.sensor.proxy_helpers import (
    ROOT,
    ProxyProcess,
    RaisingSink,
    RawUpstream,
    RecordingSink,
    RssSampler,
    Upstream,
    raw_roundtrip,
    rss_bytes,
    running_proxy,
    unanswered_port,
)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = await Upstream().start()
    yield up
    await up.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    # auto_decompress off: the tests compare the bytes on the wire.
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def cfg_for(url: str, **kw: object) -> SensorConfig:
    return SensorConfig(upstream=url, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# pass-through


@pytest.mark.parametrize("method", METHODS)
async def test_methods_and_bodies_pass_through_byte_exact(
    method: str, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    body = os.urandom(100_000) if method not in ("GET", "HEAD", "OPTIONS") else b""
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url), sink) as (port, counters):
        async with client.request(
            method, URL(f"http://127.0.0.1:{port}/items/7?x=1&y=%2F", encoded=True), data=body
        ) as resp:
            got = await resp.read()
            assert resp.status == 200
            assert resp.headers["X-Upstream"] == "yes"
            assert got == body
        (ex,) = await sink.wait_for(1)
    (seen,) = upstream.seen
    assert seen.method == method
    assert seen.raw_path == "/items/7?x=1&y=%2F"
    assert seen.body == body
    assert ex.method == method and ex.status == 200 and ex.source == "inline"
    assert ex.path == "/items/7" and ex.query_string == "x=1&y=%2F"
    assert ex.request_body_size == len(body)
    assert counters.requests == 1


async def test_upstream_path_prefix_is_kept(upstream: Upstream, client: aiohttp.ClientSession) -> None:
    async with running_proxy(cfg_for(upstream.url + "/api/v2/"), RecordingSink()) as (port, _):
        resp = await client.get(URL(f"http://127.0.0.1:{port}/users/1?q=a%20b", encoded=True))
        assert resp.status == 200
        resp.release()
    assert upstream.seen[0].raw_path == "/api/v2/users/1?q=a%20b"


async def test_request_framing_on_the_wire() -> None:
    """What aiohttp's client actually sends upstream: Content-Length when the client sent one,
    chunked otherwise, whatever framing header spelling the client used."""
    raw = await RawUpstream().start()
    try:
        async with running_proxy(cfg_for(raw.url), RecordingSink()) as (port, _):
            cl = await raw_roundtrip(
                port, b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            )
            chunked = await raw_roundtrip(
                port,
                b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\nConnection: close\r\n\r\n"
                b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
            )
            empty = await raw_roundtrip(port, b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert all(r.startswith(b"HTTP/1.1 200") for r in (cl, chunked, empty))
        req_cl, req_chunked, req_empty = raw.requests
        assert b"\r\ncontent-length: 5\r\n" in req_cl.head.lower()
        assert b"transfer-encoding" not in req_cl.head.lower()
        assert req_cl.body_wire == b"hello"

        head = req_chunked.head.lower()
        assert b"\r\ntransfer-encoding: chunked\r\n" in head  # normalised, not ",chunked"
        assert b",chunked" not in head and b"content-length" not in head
        # re-chunked by the proxy: chunk boundaries may differ, the payload may not
        assert b"".join(_dechunk(req_chunked.body_wire)) == b"abcdefg"

        assert b"content-length" not in req_empty.head.lower()
        assert b"transfer-encoding" not in req_empty.head.lower()
        assert req_empty.body_wire == b""
    finally:
        await raw.stop()


def _dechunk(wire: bytes) -> list[bytes]:
    out = []
    while wire:
        size_line, _, rest = wire.partition(b"\r\n")
        size = int(size_line, 16)
        out.append(rest[:size])
        wire = rest[size + 2 :]
        if size == 0:
            break
    return out


async def test_chunked_request_and_response_stream(client: aiohttp.ClientSession) -> None:
    parts = [os.urandom(70_000) for _ in range(5)]

    async def handler(request: web.Request, body: bytes) -> web.StreamResponse:
        resp = web.StreamResponse()  # no Content-Length -> chunked
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    up = await Upstream(handler=handler).start()
    sink = RecordingSink()

    async def gen() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    try:
        async with running_proxy(cfg_for(up.url, inspect_bytes=1000), sink) as (port, _):
            async with client.post(f"http://127.0.0.1:{port}/stream", data=gen()) as resp:
                assert resp.headers.get("Transfer-Encoding") == "chunked"
                assert "Content-Length" not in resp.headers
                assert await resp.read() == b"".join(parts)
            (ex,) = await sink.wait_for(1)
        assert up.seen[0].body == b"".join(parts)
        assert up.seen[0].headers["Transfer-Encoding"] == "chunked"
        total = sum(map(len, parts))
        assert ex.request_body_size == total and ex.response_body_size == total
        assert ex.request_body == parts[0][:1000] and ex.response_body == parts[0][:1000]
    finally:
        await up.stop()


async def test_gzip_bodies_pass_unchanged_both_ways(client: aiohttp.ClientSession) -> None:
    request_gz = gzip.compress(b'{"name": "alice", "card": "4111111111111111"}' * 50)
    response_gz = gzip.compress(b'{"ok": true}' * 500)

    async def handler(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(body=response_gz, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    up = await Upstream(handler=handler, auto_decompress=False).start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(up.url), sink) as (port, _):
            async with client.post(
                f"http://127.0.0.1:{port}/gz",
                data=request_gz,
                headers={"Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
            ) as resp:
                assert resp.headers["Content-Encoding"] == "gzip"
                assert resp.headers["Content-Length"] == str(len(response_gz))
                assert await resp.read() == response_gz
            (ex,) = await sink.wait_for(1)
        seen = up.seen[0]
        assert seen.body == request_gz  # not decompressed by the proxy's server side
        assert seen.headers["Content-Encoding"] == "gzip"
        assert seen.headers["Accept-Encoding"] == "gzip"  # the client's, not aiohttp's default
        assert ex.request_body == request_gz and ex.response_body == response_gz
    finally:
        await up.stop()


async def test_keepalive_reuses_upstream_connections(upstream: Upstream, client: aiohttp.ClientSession) -> None:
    async with running_proxy(cfg_for(upstream.url), RecordingSink()) as (port, _):
        for i in range(20):
            async with client.post(f"http://127.0.0.1:{port}/k/{i}", data=b"x" * i) as resp:
                assert resp.status == 200
                await resp.read()

        # concurrent bursts open at most as many connections as requests in flight
        async def one(i: int) -> int:
            async with client.get(f"http://127.0.0.1:{port}/c/{i}") as resp:
                await resp.read()
                return resp.status

        assert await asyncio.gather(*(one(i) for i in range(10))) == [200] * 10
    assert len(upstream.seen) == 30
    assert len({s.peer_port for s in upstream.seen[:20]}) == 1  # one upstream connection for 20 requests
    assert len(upstream.peer_ports) <= 11


async def test_header_hygiene(upstream: Upstream, client: aiohttp.ClientSession) -> None:
    async with running_proxy(cfg_for(upstream.url), RecordingSink()) as (port, _):
        async with client.get(
            f"http://127.0.0.1:{port}/h",
            headers={
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "secret-hop",
                "Keep-Alive": "timeout=5",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "TE": "trailers",
                "Trailer": "X-T",
                "Upgrade": "websocket",
                "X-Forwarded-For": "203.0.113.7, 10.0.0.1",
                "X-Forwarded-Host": "spoofed.example",
                "X-Request-ID": "abc-123.def:456_x",
                "Authorization": "Bearer t",
                "Host": "api.example.com",
            },
        ) as resp:
            assert resp.status == 200
            assert resp.headers["X-Request-ID"] == "abc-123.def:456_x"  # kept and returned
        async with client.get(
            f"http://127.0.0.1:{port}/h", headers={"X-Request-ID": "bad id with spaces<script>"}
        ) as resp:
            generated = resp.headers["X-Request-ID"]
        async with client.get(f"http://127.0.0.1:{port}/h", headers={"X-Request-ID": "a" * 129}) as resp:
            too_long = resp.headers["X-Request-ID"]
    first, second, third = upstream.seen
    h = first.headers
    for hop in ("Connection", "X-Hop", "Keep-Alive", "Proxy-Authorization", "TE", "Trailer", "Upgrade"):
        assert hop not in h, hop
    assert h.getall("X-Forwarded-For") == ["203.0.113.7, 10.0.0.1, 127.0.0.1"]
    assert h["X-Forwarded-Host"] == "api.example.com"
    assert h["X-Forwarded-Proto"] == "http"
    assert h["Host"] == f"127.0.0.1:{upstream.port}"
    assert h["Authorization"] == "Bearer t"  # end-to-end headers pass
    assert h["X-Request-ID"] == "abc-123.def:456_x"
    assert "User-Agent" not in h or h["User-Agent"].startswith("Python/")  # only what the client sent
    assert len(generated) == 32 and second.headers["X-Request-ID"] == generated
    assert len(too_long) == 32 and third.headers["X-Request-ID"] == too_long


def test_request_id_and_target_helpers() -> None:
    assert sane_request_id("req-1") == "req-1"
    assert sane_request_id("x" * 128) == "x" * 128
    assert len(sane_request_id("x" * 129)) == 32
    assert len(sane_request_id("a\r\nb")) == 32
    assert len(sane_request_id(None)) == 32
    assert split_target("/a/b?c=d") == ("/a/b", "c=d")
    assert split_target("http://evil.example:8080/x/y?q=1") == ("/x/y", "q=1")
    assert split_target("https://evil.example?q=1") == ("/", "q=1")
    assert split_target("http://evil.example") == ("/", "")
    assert split_target("//evil.example/x") == ("//evil.example/x", "")
    assert split_target("/a#frag") == ("/a", "")


def test_generated_request_ids_are_unique_across_a_fork() -> None:
    """Ids come from a per-process generator (no system call per request); a forked child (the
    proxy process) must not repeat its parent's sequence."""
    ids = {sane_request_id(None) for _ in range(10_000)}
    assert len(ids) == 10_000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, sane_request_id(None).encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_id = sane_request_id(None)
    assert len(child_id) == 32 and child_id != parent_id


async def test_absolute_form_target_does_not_change_upstream(upstream: Upstream) -> None:
    evil = await Upstream().start()
    try:
        async with running_proxy(cfg_for(upstream.url), RecordingSink()) as (port, _):
            out = await raw_roundtrip(
                port,
                f"GET http://127.0.0.1:{evil.port}/steal?x=1 HTTP/1.1\r\nHost: good.example\r\n"
                f"Connection: close\r\n\r\n".encode(),
            )
            out2 = await raw_roundtrip(port, b"GET //127.0.0.1/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200") and out2.startswith(b"HTTP/1.1 200")
        assert evil.seen == []
        assert upstream.seen[0].raw_path == "/steal?x=1"
        assert upstream.seen[0].headers["Host"] == f"127.0.0.1:{upstream.port}"
        assert upstream.seen[0].headers["X-Forwarded-Host"] == "good.example"
        assert upstream.seen[1].raw_path == "//127.0.0.1/x"
    finally:
        await evil.stop()


@pytest.mark.parametrize(
    "request_line",
    [b"GET /v HTTP/2.0\r\nHost: h\r\n\r\n", b"GET /v HTTP/0.9\r\nHost: h\r\n\r\n", b"GET /v\r\n\r\n"],
    ids=["http2.0", "http0.9", "http0.9-bare"],
)
async def test_non_http1_versions_rejected_never_forwarded(request_line: bytes, upstream: Upstream) -> None:
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url), sink) as (port, counters):
        out = await raw_roundtrip(port, request_line)
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 505 ")
        assert b"x-request-id: " in head.lower()
        doc = json.loads(body)
        assert doc["status"] == 505 and doc["request_id"]
        (ex,) = await sink.wait_for(1)
    assert upstream.seen == []
    assert counters.rejected_version == 1
    assert ex.status == 505 and ex.upstream_error == "http_version_not_supported"


async def test_transfer_codings_other_than_chunked_rejected(upstream: Upstream) -> None:
    async with running_proxy(cfg_for(upstream.url), RecordingSink()) as (port, counters):
        out = await raw_roundtrip(
            port, b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        # the parser itself refuses CL + TE and duplicate, conflicting Content-Length
        smuggle = await raw_roundtrip(
            port, b"POST /t HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
    assert out.startswith(b"HTTP/1.1 501 ")
    assert smuggle.startswith(b"HTTP/1.0 400 ")
    assert upstream.seen == [] and counters.rejected_framing == 1


async def test_http10_client_is_served(upstream: Upstream) -> None:
    async with running_proxy(cfg_for(upstream.url), RecordingSink()) as (port, _):
        out = await raw_roundtrip(port, b"POST /old HTTP/1.0\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    assert out.startswith(b"HTTP/1.0 200")
    assert out.endswith(b"abc")
    assert upstream.seen[0].body == b"abc"


# ---------------------------------------------------------------------------------------------------
# upstream failures


async def test_502_on_refused_port_then_recovers(client: aiohttp.ClientSession) -> None:
    dead_port = free_port()
    sink = RecordingSink()
    async with running_proxy(cfg_for(f"http://127.0.0.1:{dead_port}"), sink) as (port, counters):
        async with client.get(f"http://127.0.0.1:{port}/x", headers={"X-Request-ID": "r-502"}) as resp:
            assert resp.status == 502
            assert resp.headers["Content-Type"] == "application/problem+json"
            assert resp.headers["X-Request-ID"] == "r-502"
            doc = await resp.json(content_type=None)
            assert doc["status"] == 502 and doc["title"] == "Bad Gateway" and doc["request_id"] == "r-502"
            assert doc["type"] and doc["detail"]
        # the upstream comes back on the same port: the proxy serves again
        app = web.Application()

        async def back(request: web.Request) -> web.Response:
            return web.Response(text="back")

        app.router.add_get("/x", back)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", dead_port).start()
        try:
            async with client.get(f"http://127.0.0.1:{port}/x") as resp:
                assert resp.status == 200 and await resp.text() == "back"
        finally:
            await runner.cleanup()
        ex = (await sink.wait_for(2))[0]
    assert counters.upstream_errors_502 == 1
    assert ex.status == 502 and ex.upstream_error == "refused"


async def test_504_on_hung_upstream_then_serves(client: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request, body: bytes) -> web.StreamResponse:
        if request.path == "/hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), 5)
        return web.Response(text="fast")

    up = await Upstream(handler=handler).start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(up.url, read_timeout=0.3, connect_timeout=0.5), sink) as (port, counters):
            async with client.post(f"http://127.0.0.1:{port}/hang", data=b"abc") as resp:
                assert resp.status == 504
                doc = await resp.json(content_type=None)
                assert doc["status"] == 504 and doc["request_id"] == resp.headers["X-Request-ID"]
            async with client.get(f"http://127.0.0.1:{port}/fast") as resp:
                assert resp.status == 200 and await resp.text() == "fast"
            exchanges = await sink.wait_for(2)
        release.set()
    finally:
        await up.stop()
    assert counters.upstream_timeouts_504 == 1
    assert exchanges[0].upstream_error == "read_timeout" and exchanges[0].request_body == b"abc"


async def test_504_on_connect_timeout(client: aiohttp.ClientSession) -> None:
    sink = RecordingSink()
    with unanswered_port() as dead:
        async with running_proxy(cfg_for(f"http://127.0.0.1:{dead}", connect_timeout=0.3), sink) as (port, counters):
            async with client.get(f"http://127.0.0.1:{port}/x") as resp:
                assert resp.status == 504
                assert (await resp.json(content_type=None))["request_id"] == resp.headers["X-Request-ID"]
            (ex,) = await sink.wait_for(1)
    assert counters.upstream_timeouts_504 == 1 and ex.upstream_error == "connect_timeout"


async def test_small_response_failing_mid_body_is_a_clean_504(client: aiohttp.ClientSession) -> None:
    # Small length-framed bodies are read whole before anything is sent: an upstream that stalls
    # mid-body still gets the client an honest status instead of a truncated 200.
    raw = await RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly-a-little").start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(raw.url, read_timeout=0.5), sink) as (port, counters):
            async with client.get(f"http://127.0.0.1:{port}/short") as resp:
                assert resp.status == 504
                problem = await resp.json(content_type=None)
                assert problem["status"] == 504 and problem["request_id"] == resp.headers["X-Request-ID"]
            (ex,) = await sink.wait_for(1)
    finally:
        await raw.stop()
    assert counters.upstream_timeouts_504 == 1 and counters.upstream_aborts == 0
    assert ex.status == 504


async def test_upstream_abort_mid_response_cuts_client(client: aiohttp.ClientSession) -> None:
    # Above SMALL_BODY the response streams: once headers are out, cutting the connection is the
    # only honest signal left.
    raw = await RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly-a-little").start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(raw.url, read_timeout=0.5), sink) as (port, counters):
            # the raw upstream keeps the connection open waiting for the next request; a short
            # sock_read timeout turns that into an upstream failure mid-body
            async with client.get(f"http://127.0.0.1:{port}/short") as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
            (ex,) = await sink.wait_for(1)
    finally:
        await raw.stop()
    assert counters.upstream_aborts == 1
    assert ex.status == 200 and ex.response_body == b"only-a-little" and ex.upstream_error == "upstream_timeout"


async def test_head_keeps_upstream_content_length(client: aiohttp.ClientSession) -> None:
    raw = await RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n").start()
    try:
        async with running_proxy(cfg_for(raw.url), RecordingSink()) as (port, _):
            for _ in range(2):  # the connection stays usable: no body bytes were expected or sent
                async with client.head(f"http://127.0.0.1:{port}/doc") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Length"] == "1234"
                    assert await resp.read() == b""
    finally:
        await raw.stop()


async def test_redirects_and_cookies_are_not_acted_on(client: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request, body: bytes) -> web.StreamResponse:
        resp = web.Response(status=302, headers={"Location": "/elsewhere"})
        resp.set_cookie("session", "s3cret")
        return resp

    up = await Upstream(handler=handler).start()
    try:
        async with running_proxy(cfg_for(up.url), RecordingSink()) as (port, _):
            for _ in range(2):
                async with client.get(f"http://127.0.0.1:{port}/r", allow_redirects=False) as resp:
                    assert resp.status == 302 and resp.headers["Location"] == "/elsewhere"
                    assert "session=s3cret" in resp.headers["Set-Cookie"]
                client.cookie_jar.clear()
        assert [s.raw_path for s in up.seen] == ["/r", "/r"]  # never followed
        assert "Cookie" not in up.seen[1].headers  # the proxy keeps no cookie jar
    finally:
        await up.stop()


async def test_response_headers_not_invented(client: aiohttp.ClientSession) -> None:
    raw = await RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody").start()
    try:
        async with (
            running_proxy(cfg_for(raw.url), RecordingSink()) as (port, _),
            client.get(f"http://127.0.0.1:{port}/") as resp,
        ):
            assert await resp.read() == b"body"
            assert "Content-Type" not in resp.headers
            assert "Server" not in resp.headers
            assert resp.headers.getall("X-A") == ["1", "2"]
    finally:
        await raw.stop()


# ---------------------------------------------------------------------------------------------------
# analysis isolation, capture


async def test_raising_sink_never_breaks_requests(upstream: Upstream, client: aiohttp.ClientSession) -> None:
    sink = RaisingSink()
    async with running_proxy(cfg_for(upstream.url), sink) as (port, counters):
        for _ in range(3):
            async with client.post(f"http://127.0.0.1:{port}/x", data=b"payload") as resp:
                assert resp.status == 200 and await resp.read() == b"payload"
    assert sink.calls == 3
    assert counters.analysis_errors == 3


async def test_exchange_prefixes_sizes_and_fields(client: aiohttp.ClientSession) -> None:
    response_body = bytes(range(256)) * 4

    async def handler(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=201, body=response_body, headers={"Content-Type": "application/json"})

    up = await Upstream(handler=handler).start()
    sink = RecordingSink()
    request_body = b"0123456789" * 10
    try:
        async with running_proxy(cfg_for(up.url, inspect_bytes=16), sink) as (port, _):
            async with client.put(
                URL(f"http://127.0.0.1:{port}/users/%7E42?id=9&x=%20", encoded=True),
                data=request_body,
                headers={"X-Api-Key": "k1", "X-Request-ID": "rid-1"},
            ) as resp:
                assert resp.status == 201 and await resp.read() == response_body
            (ex,) = await sink.wait_for(1)
    finally:
        await up.stop()
    assert isinstance(ex, Exchange)
    assert ex.request_id == "rid-1"
    assert ex.method == "PUT" and ex.path == "/users/~42" and ex.query_string == "id=9&x=%20"
    assert ex.request_headers["X-Api-Key"] == "k1"
    assert ex.peer_ip == "127.0.0.1" and ex.listener_scheme == "http" and ex.http_version == "1.1"
    assert ex.request_body == request_body[:16] and ex.request_body_size == 100
    assert ex.response_body == response_body[:16] and ex.response_body_size == 1024
    assert ex.status == 201 and ex.response_headers["Content-Type"] == "application/json"
    assert ex.started_at > 1.6e9 and ex.duration_ms >= 0
    assert ex.source == "inline" and ex.upstream_error is None and ex.peer_cert_subject is None


async def test_client_disconnect_mid_response_is_counted(client: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request, body: bytes) -> web.StreamResponse:
        if request.path == "/again":
            return web.Response(text="small")
        resp = web.StreamResponse(headers={"Content-Length": str(64 * 1024 * 1024)})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(1024):
                await resp.write(b"z" * 65536)
        return resp

    up = await Upstream(handler=handler).start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(up.url), sink) as (port, counters):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
            await reader.readexactly(100_000)
            writer.transport.abort()  # the client vanishes mid-body
            (ex,) = await sink.wait_for(1, timeout=10)
            async with client.get(f"http://127.0.0.1:{port}/again") as resp:  # still serving
                assert resp.status == 200
                resp.release()
    finally:
        await up.stop()
    assert counters.client_disconnects == 1
    assert ex.upstream_error == "client_disconnect" and ex.status == 200
    assert 0 < ex.response_body_size < 64 * 1024 * 1024


async def test_client_that_stops_reading_is_cut() -> None:
    async def handler(request: web.Request, body: bytes) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(256 * 1024 * 1024)})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(4096):
                await resp.write(b"s" * 65536)
        return resp

    up = await Upstream(handler=handler).start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(up.url, client_body_timeout=0.3), sink) as (port, counters):
            # never read: past 2 KiB the stream stops reading, then the socket buffers fill up
            _reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
            writer.write(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
            (ex,) = await sink.wait_for(1, timeout=10)
            writer.transport.abort()
    finally:
        await up.stop()
    assert counters.client_disconnects == 1 and ex.upstream_error == "client_disconnect"
    assert ex.response_body_size < 256 * 1024 * 1024


async def test_keepalive_connection_after_sensor_answers(client: aiohttp.ClientSession) -> None:
    """Sensor-made answers (502 here) are written once; the connection stays usable."""
    dead = free_port()
    async with running_proxy(cfg_for(f"http://127.0.0.1:{dead}"), RecordingSink()) as (port, _):
        out = await raw_roundtrip(
            port,
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )
    assert out.count(b"HTTP/1.1 502 Bad Gateway\r\n") == 2
    assert out.count(b"HTTP/1.1") == 2


# ---------------------------------------------------------------------------------------------------
# body caps and timeouts


async def test_413_on_content_length_above_cap_before_upstream(upstream: Upstream) -> None:
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url, max_body_bytes=1000), sink) as (port, counters):
        out = await raw_roundtrip(port, b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n" + b"a" * 1001)
        assert out.startswith(b"HTTP/1.1 413 ")
        assert json.loads(out.partition(b"\r\n\r\n")[2])["status"] == 413
        # Expect: 100-continue above the cap: no 100 Continue invitation, straight 413
        out = await raw_roundtrip(
            port, b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        assert out.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in out
        # within the cap: forwarded; the sensor answers the 100-continue itself
        out = await raw_roundtrip(
            port,
            b"POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\nabc",
        )
        assert b"HTTP/1.1 100 Continue" in out and b"HTTP/1.1 200 OK" in out
    assert [s.raw_path for s in upstream.seen] == ["/ok"]
    assert "Expect" not in upstream.seen[0].headers
    assert counters.body_too_large == 2


async def test_413_on_chunked_body_above_cap(upstream: Upstream, client: aiohttp.ClientSession) -> None:
    sink = RecordingSink()

    async def gen() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"b" * 10_000
            await asyncio.sleep(0.001)

    async with running_proxy(cfg_for(upstream.url, max_body_bytes=100_000), sink) as (port, counters):
        async with client.post(f"http://127.0.0.1:{port}/up", data=gen()) as resp:
            assert resp.status == 413
            assert (await resp.json(content_type=None))["status"] == 413
        (ex,) = await sink.wait_for(1)
        async with client.post(f"http://127.0.0.1:{port}/small", data=gen.__name__.encode()) as resp:
            assert resp.status == 200
    assert counters.body_too_large == 1
    assert ex.upstream_error == "body_too_large"
    assert [s.raw_path for s in upstream.seen] == ["/small"]  # the aborted upload never completed upstream
    assert upstream.aborted_uploads == 1  # it had started, and was cut


async def test_408_when_client_body_stalls(upstream: Upstream) -> None:
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url, client_body_timeout=0.3), sink) as (port, counters):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n")  # ... and no body
        async with asyncio.timeout(5):
            out = await reader.read()
        writer.close()
        (ex,) = await sink.wait_for(1)
    assert out.startswith(b"HTTP/1.1 408 ")
    assert upstream.seen == []
    assert counters.client_body_timeouts == 1 and ex.upstream_error == "client_body_timeout"


@pytest.mark.parametrize(
    ("declared", "aborted_upstream"),
    [
        (100, 0),  # small body: read whole before forwarding, so the upstream sees nothing at all
        (200_000, 1),  # streamed body: the first chunk went upstream, the upload is cut
    ],
)
async def test_stall_mid_upload_aborts_upstream(upstream: Upstream, declared: int, aborted_upstream: int) -> None:
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url, client_body_timeout=0.3), sink) as (port, counters):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n0123456789" % declared)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"abcdefghij")  # a second chunk, then silence
        async with asyncio.timeout(5):
            out = await reader.read()
        writer.close()
        (ex,) = await sink.wait_for(1)
    assert out.startswith(b"HTTP/1.1 408 ") or out == b""
    assert upstream.seen == []  # the upstream never got a complete request ...
    assert upstream.aborted_uploads == aborted_upstream  # ... at most a cut one
    assert counters.client_body_timeouts == 1 and ex.request_body_size == 20


# ---------------------------------------------------------------------------------------------------
# enforce hook, start-up checks


async def test_request_gate_can_block_and_fails_open(upstream: Upstream, client: aiohttp.ClientSession) -> None:
    seen: list[Exchange] = []

    async def gate(request: web.Request | None, ex: Exchange) -> web.StreamResponse | None:
        seen.append(ex)
        if ex.path == "/admin":
            return web.json_response({"blocked": True}, status=403)
        if ex.path == "/boom":
            raise RuntimeError("rule engine bug")
        return None

    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url), sink, request_gate=gate) as (port, counters):
        async with client.post(f"http://127.0.0.1:{port}/admin", data=b"first-bytes") as resp:
            assert resp.status == 403 and resp.headers["X-Request-ID"]
        async with client.get(f"http://127.0.0.1:{port}/boom") as resp:
            assert resp.status == 200
        async with client.get(f"http://127.0.0.1:{port}/fine") as resp:
            assert resp.status == 200
        exchanges = await sink.wait_for(3)
    assert seen[0].request_body == b"first-bytes" and seen[0].status == 0
    assert [s.raw_path for s in upstream.seen] == ["/boom", "/fine"]
    assert counters.blocked == 1 and counters.analysis_errors == 1
    assert exchanges[0].upstream_error == "blocked" and exchanges[0].status == 403


def test_c_parser_is_in_use() -> None:
    assert c_parser_in_use()
    # and the check does notice the pure-Python fallback
    probe = "from sensor.http_common import c_parser_in_use; print(c_parser_in_use())"
    env = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_build_proxy_app_requires_upstream() -> None:
    with pytest.raises(ValueError, match="upstream"):
        build_proxy_app(SensorConfig(upstream=None), RecordingSink())
    assert ProxyCounters().requests == 0


# ---------------------------------------------------------------------------------------------------
# TLS listener with client certificates (openssl CLI)


async def test_tls_listener_records_client_certificate(pki: Path, upstream: Upstream) -> None:
    cfg = cfg_for(
        upstream.url,
        tls_cert=str(pki / "server.pem"),
        tls_key=str(pki / "server.key"),
        tls_client_ca=str(pki / "ca.pem"),
    )
    sink = RecordingSink()
    with_cert = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with_cert.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    without_cert = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    async with running_proxy(cfg, sink) as (port, _), aiohttp.ClientSession() as session:
        async with session.get(f"https://127.0.0.1:{port}/m", ssl=with_cert) as resp:
            assert resp.status == 200
        async with session.get(f"https://127.0.0.1:{port}/m", ssl=without_cert) as resp:
            assert resp.status == 200
        first, second = await sink.wait_for(2)
    assert first.peer_cert_subject == "CN=client,O=Acme"
    assert first.listener_scheme == "https"
    assert second.peer_cert_subject is None
    assert upstream.seen[0].headers["X-Forwarded-Proto"] == "https"


# ---------------------------------------------------------------------------------------------------
# 1 GiB each way through a proxy process with bounded memory

GIB = 1024 * 1024 * 1024
BLOCK = 1024 * 1024


def _block(i: int, base: bytes) -> bytes:
    # distinct per position, so reordering or duplication changes the checksum
    return i.to_bytes(8, "big") + base[8:]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_one_gib_upload_and_download_memory_bounded() -> None:
    base = os.urandom(BLOCK)
    n_blocks = GIB // BLOCK

    async def upload(request: web.Request) -> web.StreamResponse:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"sha256": digest.hexdigest(), "size": size})

    async def download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(GIB)})
        await resp.prepare(request)
        for i in range(n_blocks):
            await resp.write(_block(i, base))
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/upload", upload)
    app.router.add_get("/download", download)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    up_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", up_port).start()
    proxy = ProxyProcess(f"http://127.0.0.1:{up_port}")
    try:
        await asyncio.to_thread(proxy.wait_ready)
        baseline = rss_bytes(proxy.proc.pid)
        expected = hashlib.sha256()
        for i in range(n_blocks):
            expected.update(_block(i, base))

        async def body() -> AsyncIterator[bytes]:
            for i in range(n_blocks):
                yield _block(i, base)

        timeout = aiohttp.ClientTimeout(total=120)
        with RssSampler(proxy.proc.pid) as sampler:
            async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
                url = f"http://127.0.0.1:{proxy.port}"
                async with session.post(f"{url}/upload", data=body()) as resp:  # chunked upload
                    result = await resp.json()
                assert result == {"sha256": expected.hexdigest(), "size": GIB}
                got = hashlib.sha256()
                size = 0
                async with session.get(f"{url}/download") as resp:
                    assert resp.headers["Content-Length"] == str(GIB)
                    async for chunk in resp.content.iter_any():
                        got.update(chunk)
                        size += len(chunk)
                assert size == GIB and got.hexdigest() == expected.hexdigest()
        grown = sampler.peak - baseline
        print(f"proxy RSS: baseline {baseline / 1e6:.1f} MB, peak {sampler.peak / 1e6:.1f} MB")
        assert grown < 64 * 1024 * 1024, f"proxy RSS grew by {grown / 1e6:.1f} MB"
    finally:
        out = proxy.stop()
        await runner.cleanup()
    assert f"EXCHANGES 2 {GIB} " in out  # the sink saw both, with true sizes
