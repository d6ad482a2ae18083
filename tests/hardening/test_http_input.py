"""Hostile HTTP input at the inline proxy: request smuggling probes and header bombs.

Real sockets on 127.0.0.1: raw bytes from the client, a byte-level upstream (``RawUpstream``) that
records each request head and body exactly as framed on the wire.

"Nothing lost" here means: the backend receives exactly the requests the sensor logged (same method
and path, in order), each with at most one framing header, and a follow-up request on the same
connection arrives clean. "Clear error" means: a probe the sensor refuses gets a 4xx status line and
the connection is closed, and the backend sees nothing of it.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from sensor.config import SensorConfig
from sensor.http_common import MAX_HEADER_COUNT
from tests.sensor.proxy_helpers import RawRequest, RawUpstream, RecordingSink, raw_roundtrip, running_proxy

FOLLOW = b"GET /follow HTTP/1.1\r\nHost: x\r\n\r\n"
H = b"Host: x\r\n"
POST = b"POST /p HTTP/1.1\r\n" + H
CLOSE = b"Connection: close\r\n"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] \d{3} ")

# (name, raw request, "pass" | "reject"). "pass": forwarded once, re-framed; "reject": 4xx, nothing forwarded.
PROBES: list[tuple[str, bytes, str]] = [
    ("cl_te", POST + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", "reject"),
    ("te_cl", POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"8\r\nSMUGGLED\r\n0\r\n\r\n", "reject"),
    ("duplicate_cl", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "reject"),
    ("duplicate_cl_same", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "reject"),
    ("cl_list", POST + b"Content-Length: 5, 5\r\n\r\nhello", "reject"),
    ("cl_plus_sign", POST + b"Content-Length: +5\r\n\r\nhello", "reject"),
    ("te_xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "reject"),
    ("te_space_before_colon", POST + b"Transfer-Encoding : chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", "reject"),
    ("te_twice", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", "reject"),
    ("te_line_folding", POST + b"X: y\r\n Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", "reject"),
    ("te_in_http10", b"POST /p HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk_size_overflow", POST + b"Transfer-Encoding: chunked\r\n\r\n"
     b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk_bare_lf", POST + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", "reject"),
    ("http09", b"GET /p\r\n\r\n", "reject"),
    ("http20_line", b"GET /p HTTP/2.0\r\n" + H + b"\r\n", "reject"),
    ("http12_line", b"GET /p HTTP/1.2\r\n" + H + b"\r\n", "reject"),
    ("bare_lf", b"GET /p HTTP/1.1\n" + b"Host: x\n\n", "reject"),
    ("nul_in_header", b"GET /p HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", "reject"),
    ("nul_in_target", b"GET /p\x00q HTTP/1.1\r\n" + H + b"\r\n", "reject"),
    ("cr_in_header", b"GET /p HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", "reject"),
    ("two_hosts", b"GET /p HTTP/1.1\r\n" + H + b"Host: evil\r\n\r\n", "reject"),
    # accepted, but re-framed by the sensor: the backend gets one framing header and the same body
    ("te_tab", POST + b"Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "pass"),
    ("te_leading_comma", POST + b"Transfer-Encoding: ,chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", "pass"),
    ("te_upper_case", POST + b"Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "pass"),
    ("chunk_extension", POST + b"Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
     "pass"),
    ("absolute_form", b"GET http://evil.example/steal?q=1 HTTP/1.1\r\n" + H + b"\r\n", "pass"),
    ("request_in_body", POST + b"Content-Length: 35\r\n\r\n"
     b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "pass"),
]


def _line(req: RawRequest) -> tuple[str, str]:
    method, target, _ = req.head.split(b"\r\n", 1)[0].split(b" ")
    return method.decode(), target.decode().partition("?")[0]


def _framing(req: RawRequest) -> list[str]:
    names = [line.split(b":", 1)[0].strip().lower() for line in req.head.split(b"\r\n")[1:] if b":" in line]
    return [n.decode() for n in names if n in (b"content-length", b"transfer-encoding")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "probe", "expected"), PROBES, ids=[p[0] for p in PROBES])
async def test_smuggling_probe(name: str, probe: bytes, expected: str) -> None:
    """Nothing lost: the backend's parsed requests equal the sensor's logged exchanges (method, path, order),
    each carries at most one framing header (exactly one when it has a body), no smuggled request
    appears at the backend, and on an accepted probe the follow-up on the same connection arrives
    clean (no body, no framing header). Clear error: a refused probe gets a 4xx and the connection
    closes; the backend sees nothing."""
    upstream = await RawUpstream().start()
    sink = RecordingSink()
    async with running_proxy(SensorConfig(upstream=upstream.url), sink) as (port, _):
        out = await asyncio.wait_for(raw_roundtrip(port, probe + FOLLOW, timeout=1.5), 10)
        await asyncio.sleep(0.05)
    await upstream.stop()

    forwarded = [_line(r) for r in upstream.requests]
    logged = [(e.method, e.path) for e in sink.exchanges if e.upstream_error is None]
    assert forwarded == logged, (forwarded, logged)
    for req in upstream.requests:
        framing = _framing(req)
        assert len(framing) <= 1, req.head
        if req.body_wire:
            assert len(framing) == 1, req.head
        host = next(line for line in req.head.split(b"\r\n") if line.lower().startswith(b"host:"))
        assert host == f"Host: 127.0.0.1:{upstream.port}".encode()  # never the request target's host
    assert ("GET", "/smuggled") not in forwarded and b"SMUGGLED" not in b"".join(r.head for r in upstream.requests)
    status_line = out.split(b"\r\n", 1)[0]
    if expected == "reject":
        assert status_line.split(b" ")[1].startswith(b"4"), status_line
        assert upstream.requests == [] and len(STATUS_LINE.findall(out)) == 1
    else:
        assert status_line == b"HTTP/1.1 200 OK", out[:200]
        assert len(upstream.requests) == 2 and len(STATUS_LINE.findall(out)) == 2
        follow = upstream.requests[1]
        assert _line(follow) == ("GET", "/follow") and follow.body_wire == b"" and _framing(follow) == []
        first = upstream.requests[0]
        if first.body_wire:
            body = first.body_wire
            if _framing(first) == ["transfer-encoding"]:
                assert body.endswith(b"0\r\n\r\n")
            assert b"hello" in body or b"/smuggled" in body


def _request(extra: bytes, line: bytes = b"GET /bomb HTTP/1.1\r\n") -> bytes:
    return line + H + extra + b"\r\n"


HEADER_BOMBS: list[tuple[str, bytes]] = [
    ("hundreds_of_headers", _request(b"".join(b"X-H%d: v\r\n" % i for i in range(500)))),
    ("just_over_header_count", _request(b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADER_COUNT)))),
    ("one_mib_in_16k_fields", _request(b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 16000) for i in range(64)))),
    ("one_mib_in_8k_fields", _request(b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 8000) for i in range(131)))),
    ("huge_cookie", _request(b"Cookie: a=" + b"b" * (1 << 20) + b"\r\n")),
    ("many_cookie_headers", _request(b"".join(b"Cookie: c%d=%s\r\n" % (i, b"b" * 4000) for i in range(40)))),
    ("long_request_line", _request(b"", b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\n")),
    ("long_query", _request(b"", b"GET /q?" + b"a=1&" * 20000 + b" HTTP/1.1\r\n")),
    ("long_header_name", _request(b"X-" + b"a" * 20000 + b": v\r\n")),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "bomb"), HEADER_BOMBS, ids=[b[0] for b in HEADER_BOMBS])
async def test_header_bomb_refused_backend_sees_nothing(name: str, bomb: bytes) -> None:
    """Clear error: a 4xx (400 from the parser's per-line/count limits, 431 from the sensor's total
    header bound) and the connection closed. Nothing lost: nothing reaches the backend, and a normal
    request on a new connection is served right after."""
    upstream = await RawUpstream().start()
    sink = RecordingSink()
    try:
        async with running_proxy(SensorConfig(upstream=upstream.url), sink) as (port, counters):
            out = await asyncio.wait_for(raw_roundtrip(port, bomb, timeout=2.0), 10)
            status = int(out.split(b" ", 2)[1])
            assert status in (400, 431), out[:200]
            assert len(STATUS_LINE.findall(out)) == 1  # one answer, then the connection is closed
            assert upstream.requests == []
            if status == 431:
                assert counters.rejected_headers == 1
                assert sink.exchanges[0].status == 431 and sink.exchanges[0].upstream_error == "header_too_large"
            ok = await asyncio.wait_for(raw_roundtrip(port, b"GET /ok HTTP/1.1\r\n" + H + CLOSE + b"\r\n"), 10)
            assert ok.startswith(b"HTTP/1.1 200") and len(upstream.requests) == 1
    finally:
        await upstream.stop()


async def test_headers_just_under_the_bounds_pass() -> None:
    """The bounds are not tighter than documented: 99 fields and ~60 KiB of headers are forwarded."""
    upstream = await RawUpstream().start()
    try:
        async with running_proxy(SensorConfig(upstream=upstream.url), RecordingSink()) as (port, _):
            many = _request(b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADER_COUNT - 2)) + CLOSE)
            assert (await raw_roundtrip(port, many)).startswith(b"HTTP/1.1 200")
            big = _request(b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 7500) for i in range(8)) + CLOSE)
            assert (await raw_roundtrip(port, big)).startswith(b"HTTP/1.1 200")
        assert len(upstream.requests) == 2
    finally:
        await upstream.stop()
