"""Functional tests of the mirror listener and the exchange-record endpoint (real sockets)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from sensor.config import SensorConfig
from sensor.exchange import Exchange
from sensor.fastpath_mirror import strip_shadow_suffix
from sensor.mirror import RECORDS_PATH, MirrorCounters, start_mirror
from tests.conftest import free_port
from tests.sensor.proxy_helpers import RaisingSink, RecordingSink, raw_roundtrip

Mirror = tuple[str, RecordingSink, MirrorCounters]  # base URL, sink, counters


@pytest.fixture(params=[True, False], ids=["fast-path", "aiohttp"])
async def mirror(request: pytest.FixtureRequest) -> AsyncIterator[Mirror]:
    """The listener as configured by default (protocol-level fast path) and with --no-fast-path: every
    test of mirrored requests holds for both."""
    sink = RecordingSink()
    counters = MirrorCounters()
    cfg = SensorConfig(mode="mirror", inspect_bytes=1024, record_max_bytes=64 * 1024, record_max_batch=5,
                       fast_path=request.param)
    port = free_port()
    runner = await start_mirror(cfg, sink, "127.0.0.1", port, counters)
    try:
        yield f"http://127.0.0.1:{port}", sink, counters
    finally:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


# ---------------------------------------------------------------------------------------------------
# mirrored requests


async def test_nginx_mirror_uses_x_original_uri(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, counters = mirror
    async with client.post(
        f"{base}/mirror",
        data=b'{"card": "4111111111111111"}',
        headers={
            "X-Original-URI": "/api/users/%7E5?expand=1&q=%20x",
            "Host": "api.example.com",
            "X-Forwarded-For": "198.51.100.9",
            "X-Forwarded-Proto": "https",
            "X-Request-ID": "nginx-req-1",
        },
    ) as resp:
        assert resp.status == 204
        assert resp.headers["X-Request-ID"] == "nginx-req-1"
    (ex,) = await sink.wait_for(1)
    assert ex.source == "mirror" and ex.status == 0
    assert ex.method == "POST" and ex.path == "/api/users/~5" and ex.query_string == "expand=1&q=%20x"
    assert ex.request_body == b'{"card": "4111111111111111"}' and ex.request_body_size == 28
    assert ex.request_headers["X-Forwarded-For"] == "198.51.100.9"
    assert ex.listener_scheme == "https" and ex.peer_ip == "127.0.0.1"
    assert ex.request_id == "nginx-req-1"
    assert counters.mirrored_requests == 1


async def test_envoy_shadow_host_is_stripped(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, _ = mirror
    for host in ("orders.internal-shadow:8080", "orders.internal-shadow"):
        async with client.get(URL(f"{base}/orders/17?x=%2F", encoded=True), headers={"Host": host}) as resp:
            assert resp.status == 204
    first, second = await sink.wait_for(2)
    assert first.request_headers["Host"] == "orders.internal:8080"
    assert second.request_headers["Host"] == "orders.internal"
    assert first.path == "/orders/17" and first.query_string == "x=%2F"
    assert first.method == "GET" and first.request_body == b""


async def test_one_answer_per_mirrored_request_on_keepalive(mirror: Mirror) -> None:
    base, sink, _ = mirror
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps(record()).encode()
    pipelined = (
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
        + f"POST {RECORDS_PATH} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
        + b"PUT /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    out = await raw_roundtrip(port, pipelined)
    assert out.count(b"HTTP/1.1 ") == 3
    assert out.count(b"HTTP/1.1 204 ") == 2 and out.count(b"HTTP/1.1 202 ") == 1
    await sink.wait_for(3)


RAW_REQUESTS = [
    b"GET /orders/17?x=%2F HTTP/1.1\r\nHost: orders.internal-shadow:8080\r\nX-Request-ID: r-1\r\n\r\n",
    b"POST /mirror HTTP/1.1\r\nHost: api.example.com\r\nX-Original-URI: /api/users/%7E5?expand=1#frag\r\n"
    b"X-Forwarded-Proto: HTTPS\r\nX-Forwarded-For: 198.51.100.9\r\nContent-Type: application/json\r\n"
    b"Cookie: session=abc; theme=dark\r\nContent-Length: 16\r\n\r\n{\"card\": \"4111\"}",
    b"PUT /files/%C3%A9t%C3%A9 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nX-Request-ID: bad id\r\n"
    b"Content-Length: 2000\r\n\r\n" + b"z" * 2000,
    b"DELETE /a HTTP/1.1\r\nHost: h\r\nX-Test: caf\xc3\xa9 \xff\r\nConnection: close\r\n\r\n",
]


FOLLOW_UP = b"GET /next HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


def _comparable(ex: Exchange) -> dict[str, object]:
    fields = {f: getattr(ex, f) for f in ("method", "path", "query_string", "peer_ip", "listener_scheme",
                                          "http_version", "request_body", "request_body_size", "status", "source",
                                          "upstream_error", "client_ip_hint")}
    fields["request_headers"] = list(ex.request_headers.items())
    fields["request_id"] = ex.request_id if ex.request_id.startswith("r-") else "generated"
    return fields


async def test_fast_path_builds_the_exchange_the_aiohttp_path_builds() -> None:
    """The same raw requests to a listener with and without the fast path: equal exchanges (ids
    aside when generated), equal answers, and the fast one handed nothing to aiohttp."""
    seen: dict[bool, tuple[list[Exchange], list[bytes], MirrorCounters]] = {}
    for fast in (True, False):
        sink, counters, port = RecordingSink(), MirrorCounters(), free_port()
        cfg = SensorConfig(mode="mirror", inspect_bytes=1024, fast_path=fast)
        runner = await start_mirror(cfg, sink, "127.0.0.1", port, counters)
        try:
            # each on its own connection, kept alive for one more request unless it closes itself
            answers = [await raw_roundtrip(port, raw if b"Connection: close" in raw else raw + FOLLOW_UP)
                       for raw in RAW_REQUESTS]
            exchanges = await sink.wait_for(len(RAW_REQUESTS) + 3)
        finally:
            await runner.cleanup()
        seen[fast] = (exchanges, answers, counters)
    (fast_ex, fast_out, fast_counters), (slow_ex, slow_out, slow_counters) = seen[True], seen[False]
    assert [_comparable(e) for e in fast_ex] == [_comparable(e) for e in slow_ex]
    assert fast_ex[4].request_body == b"z" * 1024 and fast_ex[4].request_body_size == 2000  # the prefix kept

    def status_lines(out: bytes) -> list[bytes]:
        return [line for line in out.split(b"\r\n") if line.startswith(b"HTTP/")]

    assert [status_lines(o) for o in fast_out] == [status_lines(o) for o in slow_out]
    assert all(b"X-Request-ID: " in o for o in fast_out)
    assert b"HTTP/1.0 204 " in fast_out[2] and b"Connection: keep-alive" in fast_out[2]  # kept alive as asked
    assert fast_out[3].count(b"HTTP/1.1 204 ") == 1 and b"Connection: close" in fast_out[3]
    assert fast_counters.fast_path_handoffs == 0 and slow_counters.fast_path_handoffs == 0
    assert fast_counters.mirrored_requests == slow_counters.mirrored_requests == len(RAW_REQUESTS) + 3
    assert fast_counters.truncated_bodies == slow_counters.truncated_bodies == 1


async def test_unusual_mirrored_requests_and_records_go_to_the_aiohttp_app(client: aiohttp.ClientSession) -> None:
    sink, counters, port = RecordingSink(), MirrorCounters(), free_port()
    runner = await start_mirror(SensorConfig(mode="mirror"), sink, "127.0.0.1", port, counters)
    try:
        chunked = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" \
                  b"3\r\nabc\r\n0\r\n\r\n"
        out = await raw_roundtrip(port, chunked)
        assert out.startswith(b"HTTP/1.1 204 ")
        status, _, _ = await post_records(client, f"http://127.0.0.1:{port}", record())
        assert status == 202
        exchanges = await sink.wait_for(2)
    finally:
        await runner.cleanup()
    assert exchanges[0].request_body == b"abc" and exchanges[1].status == 201
    assert counters.fast_path_handoffs == 2 and counters.records_accepted == 1


async def test_sender_gone_mid_body_is_still_analysed(mirror: Mirror) -> None:
    base, sink, _ = mirror
    port = int(base.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /partial HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789")
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    (ex,) = await sink.wait_for(1)
    assert ex.path == "/partial" and ex.request_body == b"0123456789"
    assert ex.upstream_error == "client_disconnect" and ex.status == 0


def test_strip_shadow_suffix() -> None:
    assert strip_shadow_suffix("a.b-shadow") == "a.b"
    assert strip_shadow_suffix("a.b-shadow:80") == "a.b:80"
    assert strip_shadow_suffix("a.b:80-shadow") == "a.b:80"
    assert strip_shadow_suffix("a.b:80") == "a.b:80"
    assert strip_shadow_suffix("shadow.example") == "shadow.example"


async def test_large_mirrored_body_prefix_kept_rest_drained(mirror: Mirror) -> None:
    base, sink, counters = mirror
    body = os.urandom(3 * 1024 * 1024)
    # one connection for both requests: the first body must be fully drained for keep-alive to work
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.put(f"{base}/upload", data=body) as resp:
            assert resp.status == 204
        async with session.delete(f"{base}/upload/1") as resp:
            assert resp.status == 204
    first, second = await sink.wait_for(2)
    assert first.request_body == body[:1024] and first.request_body_size == len(body)
    assert second.method == "DELETE"
    assert counters.truncated_bodies == 1


async def test_mirror_survives_raising_sink(client: aiohttp.ClientSession) -> None:
    sink = RaisingSink()
    counters = MirrorCounters()
    port = free_port()
    runner = await start_mirror(SensorConfig(mode="mirror"), sink, "127.0.0.1", port, counters)
    try:
        for _ in range(2):
            async with client.get(f"http://127.0.0.1:{port}/x") as resp:
                assert resp.status == 204
    finally:
        await runner.cleanup()
    assert sink.calls == 2 and counters.analysis_errors == 2


async def test_mirror_body_timeout(client: aiohttp.ClientSession) -> None:
    sink = RecordingSink()
    port = free_port()
    runner = await start_mirror(SensorConfig(mode="mirror", client_body_timeout=0.2), sink, "127.0.0.1", port)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /m HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        async with asyncio.timeout(5):
            out = await reader.read()
        writer.close()
        (ex,) = await sink.wait_for(1)
    finally:
        await runner.cleanup()
    assert out.startswith(b"HTTP/1.1 408 ")
    assert ex.request_body == b"abc" and ex.upstream_error == "client_body_timeout"


# ---------------------------------------------------------------------------------------------------
# exchange records


def record(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "method": "post",
        "url": "https://api.example.com/v1/payments?debug=1",
        "request_headers": {"Authorization": "Bearer abc", "Accept": ["application/json", "text/plain"]},
        "request_body": '{"amount": 10}',
        "status": 201,
        "response_headers": {"Content-Type": "application/json", "Set-Cookie": ["a=1", "b=2"]},
        "response_body": '{"id": "p_1"}',
        "client_ip": "203.0.113.5",
        "started_at": "2026-01-02T03:04:05.5Z",
        "duration_ms": 12.5,
    }
    doc.update(overrides)
    return doc


async def post_records(
    client: aiohttp.ClientSession, base: str, payload: object
) -> tuple[int, dict[str, object], aiohttp.ClientResponse]:
    async with client.post(f"{base}{RECORDS_PATH}", data=json.dumps(payload).encode()) as resp:
        return resp.status, await resp.json(content_type=None), resp


async def test_record_single_valid(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, counters = mirror
    status, doc, _ = await post_records(client, base, record(request_id="apim-42"))
    assert status == 202 and doc == {"accepted": 1}
    (ex,) = await sink.wait_for(1)
    assert ex.source == "record" and ex.client_ip_hint == "203.0.113.5"
    assert ex.request_id == "apim-42"
    assert ex.method == "POST" and ex.path == "/v1/payments" and ex.query_string == "debug=1"
    assert ex.listener_scheme == "https"
    assert ex.request_headers["Host"] == "api.example.com"  # from the absolute URL
    assert ex.request_headers.getall("Accept") == ["application/json", "text/plain"]
    assert ex.response_headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert ex.request_body == b'{"amount": 10}' and ex.request_body_size == 14
    assert ex.response_body == b'{"id": "p_1"}' and ex.status == 201
    assert ex.started_at == pytest.approx(1767323045.5)
    assert ex.duration_ms == 12.5
    assert counters.records_accepted == 1


async def test_record_array_base64_path_url_and_epoch(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, _ = mirror
    binary = os.urandom(300)
    records = [
        record(),
        record(
            url="/files/a%20b?x=1",
            request_body=base64.b64encode(binary).decode(),
            request_body_encoding="base64",
            response_body=base64.b64encode(b"\x00\x01").decode(),
            response_body_encoding="base64",
            started_at=1700000000.25,
            client_ip="2001:db8::1",
            status=0,
        ),
    ]
    status, doc, _ = await post_records(client, base, records)
    assert status == 202 and doc == {"accepted": 2}
    _, second = await sink.wait_for(2)
    assert second.path == "/files/a b" and second.query_string == "x=1"
    assert second.request_body == binary and second.response_body == b"\x00\x01"
    assert second.started_at == 1700000000.25 and second.client_ip_hint == "2001:db8::1"
    assert "Host" not in second.request_headers or second.request_headers["Host"] != "api.example.com"


async def test_record_url_credentials_never_reach_the_exchange(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, _ = mirror
    status, _, _ = await post_records(client, base, record(url="https://alice:s3cret@api.example.com:8443/v1/x?y=2"))
    assert status == 202
    (ex,) = await sink.wait_for(1)
    assert ex.request_headers.getall("Host") == ["api.example.com:8443"]
    assert (ex.path, ex.query_string, ex.listener_scheme) == ("/v1/x", "y=2", "https")
    assert "s3cret" not in repr(ex)


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        (record(status="201"), 422, "$.status"),
        (record(status=700), 422, "$.status"),
        (record(method=""), 422, "$.method"),
        (record(extra_field=1), 422, "$"),
        (record(request_headers={"A": 1}), 422, "$.request_headers"),
        (record(request_body_encoding="rot13"), 422, "$.request_body_encoding"),
        (record(request_body="%%%", request_body_encoding="base64"), 422, "$.request_body"),
        (record(client_ip="not-an-ip"), 422, "$.client_ip"),
        (record(url="ftp://x/y"), 422, "$.url"),
        (record(url="relative/path"), 422, "$.url"),
        (record(url="http://[::1/x"), 422, "$.url"),  # an IPv6 bracket never closed
        (record(started_at="yesterday"), 422, "$.started_at"),
        (record(started_at=1700000000000), 422, "$.started_at"),
        (record(duration_ms=-1), 422, "$.duration_ms"),
        ([record(), record(client_ip="999.1.1.1")], 422, "$[1].client_ip"),
        ({"url": "/x"}, 422, "$"),
    ],
)
async def test_record_invalid_rejected_nothing_submitted(
    payload: object,
    status: int,
    field: str,
    mirror: Mirror,
    client: aiohttp.ClientSession,
) -> None:
    base, sink, counters = mirror
    got, doc, resp = await post_records(client, base, payload)
    assert got == status, doc
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert doc["status"] == status and doc["title"] and doc["detail"] and doc["request_id"]
    assert str(doc.get("field", "")).startswith(field), doc
    await asyncio.sleep(0.05)
    assert sink.exchanges == []
    assert counters.records_rejected == 1


async def test_record_malformed_json_is_400(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, _ = mirror
    async with client.post(f"{base}{RECORDS_PATH}", data=b'{"method": "GET", "url": ') as resp:
        assert resp.status == 400
        assert (await resp.json(content_type=None))["status"] == 400
    assert sink.exchanges == []


async def test_record_bodies_truncated_sizes_reported(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, counters = mirror
    big = "x" * 5000
    status, _, _ = await post_records(client, base, record(request_body=big, response_body="é" * 1000))
    assert status == 202
    (ex,) = await sink.wait_for(1)
    assert ex.request_body == b"x" * 1024 and ex.request_body_size == 5000
    assert len(ex.response_body) == 1024 and ex.response_body_size == 2000  # UTF-8 bytes
    assert counters.truncated_bodies == 2


async def test_record_oversized_and_too_many(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, counters = mirror
    status, doc, _ = await post_records(client, base, record(request_body="y" * 70_000))  # cap is 64 KiB
    assert status == 413 and doc["status"] == 413
    status, doc, _ = await post_records(client, base, [record() for _ in range(6)])  # batch cap is 5
    assert status == 413 and "5 records" in str(doc["detail"])

    # chunked (no Content-Length) above the cap: refused while reading
    async def gen() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 10_000

    async with client.post(f"{base}{RECORDS_PATH}", data=gen()) as resp:
        assert resp.status == 413
    assert sink.exchanges == []
    assert counters.records_rejected == 3


async def test_record_gzip_document(mirror: Mirror, client: aiohttp.ClientSession) -> None:
    base, sink, _ = mirror
    body = gzip.compress(json.dumps([record(), record()]).encode())
    async with client.post(f"{base}{RECORDS_PATH}", data=body, headers={"Content-Encoding": "gzip"}) as resp:
        assert resp.status == 202
    await sink.wait_for(2)
    bomb = gzip.compress(b" " * (1024 * 1024))  # inflates past record_max_bytes
    async with client.post(f"{base}{RECORDS_PATH}", data=bomb, headers={"Content-Encoding": "gzip"}) as resp:
        assert resp.status == 413
    async with client.post(f"{base}{RECORDS_PATH}", data=b"xx", headers={"Content-Encoding": "br"}) as resp:
        assert resp.status == 415
