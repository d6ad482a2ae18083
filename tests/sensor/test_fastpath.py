"""The proxy's fast path (sensor/fastpath.py) on real sockets: what it serves itself, what it hands to
the aiohttp path, and the framing and connection cases only a protocol-level proxy has to get right
(pipelining, keep-alive races with the upstream, streamed and re-chunked responses, HTTP/1.0).

The rest of the proxy's contract is tested through ``start_proxy`` in test_proxy.py and the hardening
suite, which run on the fast path by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import aiohttp
import pytest
from aiohttp import web

from sensor.config import SensorConfig
from sensor.exchange import Exchange
from tests.conftest import free_port
from tests.sensor.proxy_helpers import RawUpstream, RecordingSink, Upstream, raw_roundtrip, running_proxy


def cfg_for(upstream: str, **kw: object) -> SensorConfig:
    return SensorConfig(upstream=upstream, log_level="warning", **kw)  # type: ignore[arg-type]


@pytest.fixture
async def upstream() -> contextlib.AsyncExitStack:  # type: ignore[misc]
    up = await Upstream().start()
    yield up
    await up.stop()


async def test_plain_requests_stay_on_the_fast_path(upstream: Upstream) -> None:
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url), sink) as (port, counters):
        async with aiohttp.ClientSession() as session:
            for i in range(5):
                async with session.post(f"http://127.0.0.1:{port}/api/items?i={i}", data=b'{"a": %d}' % i,
                                        headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 200
                    assert await resp.read() == b'{"a": %d}' % i
                    assert resp.headers["X-Upstream"] == "yes"
                    assert resp.headers["X-Request-ID"]
        exchanges = await sink.wait_for(5)
    assert counters.fast_path_handoffs == 0 and counters.requests == 5
    assert [ex.request_body for ex in exchanges] == [b'{"a": %d}' % i for i in range(5)]
    assert all(ex.status == 200 and ex.response_body == ex.request_body for ex in exchanges)
    assert [s.raw_path for s in upstream.seen] == [f"/api/items?i={i}" for i in range(5)]
    # one upstream connection, reused: keep-alive on the pool
    assert len(upstream.peer_ports) == 1


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n",  # a length but no body in the response
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET http://elsewhere.example/x HTTP/1.1\r\nHost: h\r\n\r\n",  # absolute-form
        b"PROPFIND /x HTTP/1.1\r\nHost: h\r\n\r\n",  # not one of the plain methods
    ],
)
async def test_unusual_requests_are_handed_to_the_aiohttp_path(upstream: Upstream, request_bytes: bytes) -> None:
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url), sink) as (port, counters):
        out = await raw_roundtrip(port, request_bytes.replace(b"HTTP/1.1\r\nHost", b"HTTP/1.1\r\nConnection: close"
                                                              b"\r\nHost", 1), timeout=3)
        (ex,) = await sink.wait_for(1)
    assert counters.fast_path_handoffs == 1
    assert out.startswith(b"HTTP/1.1 ")
    assert b"X-Request-ID: " in out
    assert ex.request_id in out.decode("latin-1")


async def test_malformed_head_gets_the_aiohttp_paths_answer(upstream: Upstream) -> None:
    """Bare LF line ends: handed over, and aiohttp's parser answers 400; nothing goes upstream."""
    async with running_proxy(cfg_for(upstream.url), RecordingSink()) as (port, counters):
        out = await raw_roundtrip(port, b"GET /x HTTP/1.1\nHost: h\n\n", timeout=3)
    assert counters.fast_path_handoffs == 1
    assert b" 400 Bad Request" in out.split(b"\r\n")[0]
    assert upstream.seen == []


async def test_handoff_mid_connection_keeps_earlier_and_later_requests(upstream: Upstream) -> None:
    """Fast, then unusual (chunked upload), then fast again, on one keep-alive connection, pipelined."""
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url), sink) as (port, counters):
        data = (b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                b"POST /two HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
                b"GET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        out = await raw_roundtrip(port, data)
        await sink.wait_for(3)
    assert out.count(b"HTTP/1.1 200 ") == 3
    assert [s.raw_path for s in upstream.seen] == ["/one", "/two", "/three"]
    assert upstream.seen[1].body == b"hi"
    assert counters.fast_path_handoffs == 1


async def test_pipelined_requests_answered_in_order(upstream: Upstream) -> None:
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url), sink) as (port, counters):
        data = b"".join(
            b"POST /p%d HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n%s\r\n%02d" % (i, b"Connection: close\r\n"
                                                                                if i == 9 else b"", i)
            for i in range(10)
        )
        out = await raw_roundtrip(port, data)
        await sink.wait_for(10)
    bodies = [part.rsplit(b"\r\n\r\n", 1)[-1][:2] for part in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"%02d" % i for i in range(10)]
    assert counters.fast_path_handoffs == 0


async def test_pooled_connection_closed_by_upstream_is_retried_for_idempotent_methods() -> None:
    """The upstream closes each connection right after its answer without saying so (a keep-alive
    race): the next GET meets a dead pooled connection and is retried once on a fresh one."""
    raw = await RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").start()

    async def close_after_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            head = await reader.readuntil(b"\r\n\r\n")
            raw.requests.append(head)  # type: ignore[arg-type]
            writer.write(raw.response)
            await writer.drain()
        writer.close()

    assert raw.server is not None
    raw.server.close()
    await raw.server.wait_closed()
    raw.server = await asyncio.start_server(close_after_one, "127.0.0.1", raw.port)
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(raw.url), sink) as (port, counters), aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.get(f"http://127.0.0.1:{port}/r") as resp:
                        assert resp.status == 200 and await resp.read() == b"ok"
                    await asyncio.sleep(0.05)  # let the upstream's FIN arrive... or not: both must work
                async with session.post(f"http://127.0.0.1:{port}/r", data=b"x") as resp:
                    # POST is not retried, but it goes out on a fresh connection when the dead one
                    # was noticed in time, which is what happens here after the pause.
                    assert resp.status in (200, 502)
        await sink.wait_for(4)
    finally:
        await raw.stop()
    assert counters.upstream_errors_502 == sum(1 for ex in sink.exchanges if ex.status == 502)
    assert all(ex.status == 200 for ex in sink.exchanges[:3])


async def test_large_chunked_response_streams_rechunked_and_checksummed() -> None:
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB

    async def stream(request: web.Request, body: bytes) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(payload), 100_000):
            await resp.write(payload[i:i + 100_000])
        await resp.write_eof()
        return resp

    up = await Upstream(handler=stream).start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(up.url, inspect_bytes=1000), sink) as (port, counters):
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/big") as resp:
                assert resp.headers.get("Transfer-Encoding") == "chunked"
                got = hashlib.sha256(await resp.read()).hexdigest()
            # HTTP/1.0: no chunking, the end of the body is the end of the connection
            out = await raw_roundtrip(port, b"GET /big HTTP/1.0\r\n\r\n", timeout=10)
            (ex, ex10) = await sink.wait_for(2)
    finally:
        await up.stop()
    assert got == hashlib.sha256(payload).hexdigest()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"transfer-encoding" not in head.lower()
    assert hashlib.sha256(body).hexdigest() == got
    assert ex.response_body_size == len(payload) and ex.response_body == payload[:1000]
    assert ex10.response_body_size == len(payload)
    assert counters.fast_path_handoffs == 0


async def test_http10_keep_alive_and_interim_response_pass() -> None:
    raw = await RawUpstream(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    ).start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(raw.url), sink) as (port, _counters):
            out = await raw_roundtrip(
                port,
                b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /c HTTP/1.0\r\n\r\n",
            )
            await sink.wait_for(3)
    finally:
        await raw.stop()
    # 1xx only to HTTP/1.1 clients (RFC 9110 15.2)
    assert out.count(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n") == 1
    assert out.count(b" 103 ") == 1
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 1 and out.count(b"HTTP/1.0 200 OK\r\n") == 2
    first, second = out.split(b"HTTP/1.0 200 OK\r\n")[1:]
    assert b"Connection: keep-alive" in first and b"Connection: close" in second
    assert [r.head.split(b" ")[1] for r in raw.requests] == [b"/a", b"/b", b"/c"]
    # the upstream saw HTTP/1.1 with the proxy's own framing and forwarding headers, not the hop's
    assert all(r.head.startswith(b"GET /") and b" HTTP/1.1\r\n" in r.head for r in raw.requests)
    assert all(b"X-Forwarded-For: 127.0.0.1" in r.head and b"Connection:" not in r.head for r in raw.requests)


async def test_sensor_made_answer_keeps_an_http10_keep_alive_connection() -> None:
    """A 502 the sensor makes (upstream refused) tells an HTTP/1.0 keep-alive client the connection
    stays open, and the next request on it is answered too."""
    sink = RecordingSink()
    async with running_proxy(cfg_for(f"http://127.0.0.1:{free_port()}"), sink) as (port, _counters):
        out = await raw_roundtrip(port, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
        await sink.wait_for(2)
    first, second = out.split(b"HTTP/1.0 502 Bad Gateway\r\n")[1:]
    assert b"Connection: keep-alive" in first and b"Connection: close" in second


async def test_no_fast_path_option_serves_everything_through_aiohttp(upstream: Upstream) -> None:
    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url, fast_path=False), sink) as (port, counters):
        out = await raw_roundtrip(port, b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        await sink.wait_for(1)
    assert out.startswith(b"HTTP/1.1 200 ")
    assert counters.fast_path_handoffs == 0 and counters.requests == 1


async def test_upstream_connection_close_is_honoured_for_non_idempotent_requests() -> None:
    """An upstream that says ``Connection: close`` is never reused: POSTs (not retried) all succeed."""
    raw = await RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(raw.url), sink) as (port, counters):
            async with aiohttp.ClientSession() as session:
                for i in range(5):
                    async with session.post(f"http://127.0.0.1:{port}/p", data=b"%d" % i) as resp:
                        assert resp.status == 200 and await resp.read() == b"ok"
            await sink.wait_for(5)
    finally:
        await raw.stop()
    assert counters.upstream_errors_502 == 0
    assert [r.body_wire for r in raw.requests] == [b"%d" % i for i in range(5)]


async def test_pool_limit_queues_requests_without_opening_more_connections() -> None:
    async def slow(request: web.Request, body: bytes) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return web.Response(body=request.path.encode())

    up = await Upstream(handler=slow).start()
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(up.url, pool_size=2), sink) as (port, counters), \
                aiohttp.ClientSession() as session:

            async def one(i: int) -> bytes:
                async with session.get(f"http://127.0.0.1:{port}/q{i}") as resp:
                    assert resp.status == 200
                    return await resp.read()

            bodies = await asyncio.gather(*(one(i) for i in range(12)))
            await sink.wait_for(12)
    finally:
        await up.stop()
    assert bodies == [f"/q{i}".encode() for i in range(12)]
    assert len(up.peer_ports) <= 2
    assert counters.upstream_errors_502 == counters.upstream_timeouts_504 == 0


async def test_request_gate_that_awaits_is_driven_to_its_verdict(upstream: Upstream) -> None:
    """The sensor's own gate never awaits and runs without a task; a gate that does await (a
    plug-in asking something) still gets to block or pass, and a failing one fails open."""

    async def gate(request: web.Request | None, ex: Exchange) -> web.StreamResponse | None:
        assert request is None  # the fast path has no aiohttp request
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        if ex.path == "/boom":
            raise RuntimeError("plug-in bug")
        if ex.path == "/admin":
            return web.json_response({"blocked": True}, status=403)
        return None

    sink = RecordingSink()
    async with running_proxy(cfg_for(upstream.url), sink, request_gate=gate) as (port, counters), \
            aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/admin", data=b"x") as resp:
            assert resp.status == 403 and await resp.json() == {"blocked": True}
            rid = resp.headers["X-Request-ID"]
        for path in ("/boom", "/fine"):
            async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                assert resp.status == 200
        exchanges = await sink.wait_for(3)
    assert [s.raw_path for s in upstream.seen] == ["/boom", "/fine"]
    assert counters.blocked == 1 and counters.analysis_errors == 1 and counters.fast_path_handoffs == 0
    assert exchanges[0].request_id == rid and exchanges[0].status == 403 and exchanges[0].upstream_error == "blocked"
    assert exchanges[0].response_body == b'{"blocked": true}'


async def test_request_line_over_the_line_bound_is_refused_without_reaching_upstream(upstream: Upstream) -> None:
    """A 20 KiB target fits the 64 KiB head total but not the 16 KiB per-line bound: the aiohttp
    path answers it (4xx), the backend sees nothing."""
    async with running_proxy(cfg_for(upstream.url), RecordingSink()) as (port, counters):
        out = await raw_roundtrip(port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert out[:12] in (b"HTTP/1.1 400", b"HTTP/1.0 400", b"HTTP/1.1 414", b"HTTP/1.0 414"), out[:60]
    assert upstream.seen == [] and counters.fast_path_handoffs == 1


async def test_close_delimited_upstream_response_is_rechunked_for_the_client() -> None:
    """An HTTP/1.0-style upstream answer without a length ends when the upstream closes; the client
    (HTTP/1.1, keep-alive) gets it chunked and keeps its connection."""

    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, ")
            await writer.drain()
            writer.write(b"world")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_then_close, "127.0.0.1", 0)
    port_up = server.sockets[0].getsockname()[1]
    sink = RecordingSink()
    try:
        async with running_proxy(cfg_for(f"http://127.0.0.1:{port_up}"), sink) as (port, counters), \
                aiohttp.ClientSession() as session:
            for _ in range(2):  # the client's connection survives the upstream's close
                async with session.get(f"http://127.0.0.1:{port}/x") as resp:
                    assert resp.status == 200 and await resp.read() == b"hello, world"
                    assert resp.headers.get("Transfer-Encoding") == "chunked"
            (ex, _) = await sink.wait_for(2)
    finally:
        server.close()
        await server.wait_closed()
    assert ex.response_body == b"hello, world" and ex.response_body_size == 12
    assert counters.upstream_errors_502 == 0


async def test_enforce_verdict_is_reused_by_the_analysis(upstream: Upstream) -> None:
    """On the fast path the enforce gate saw the whole request: the analysis takes its verdict
    instead of scanning the request a second time, and still reports the attack."""
    from sensor.app import enforce_gate
    from sensor.evidence import PrincipalHasher
    from sensor.pipeline import Pipeline
    from sensor.proxy import ProxyCounters
    from sensor.summary import SummaryAggregator

    cfg = cfg_for(upstream.url, enforce=True)
    pipeline = Pipeline(cfg, SummaryAggregator(60), PrincipalHasher(b"k" * 32))
    scans_before = pipeline.signatures.scans
    counters = ProxyCounters()
    gate = enforce_gate(pipeline, counters, cfg)
    async with running_proxy(cfg, pipeline, counters, request_gate=gate) as (port, _), \
            aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/items?id=1") as resp:
            assert resp.status == 200
        attack = "/items?id=1'%20UNION%20SELECT%20password%20FROM%20users--"
        async with session.get(f"http://127.0.0.1:{port}{attack}") as resp:
            assert resp.status == 403
        for _ in range(100):
            if pipeline.counters.exchanges == 2:
                break
            await asyncio.sleep(0.02)
    scans = pipeline.signatures.scans - scans_before
    assert pipeline.counters.exchanges == 2 and scans == 2  # one scan per request, by the gate
    assert pipeline.counters.attacks == 1 and counters.blocked == 1


async def test_client_gone_while_an_awaiting_gate_decides_sends_nothing_upstream() -> None:
    """A plug-in gate that awaits; the client leaves before its verdict: nothing goes upstream, no
    upstream connection is opened for it, and the proxy goes on serving."""
    decided = asyncio.Event()
    connections = 0
    paths: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                paths.append(head.split(b" ")[1])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    async def slow_gate(request: web.Request | None, ex: Exchange) -> web.StreamResponse | None:
        await asyncio.sleep(0.3)
        decided.set()
        return None

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with running_proxy(cfg_for(url), RecordingSink(), request_gate=slow_gate) as (port, counters):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /left HTTP/1.1\r\nHost: h\r\n\r\n")
            await writer.drain()
            writer.close()  # gone before the verdict
            await asyncio.wait_for(decided.wait(), 5)
            await asyncio.sleep(0.2)
            out = await raw_roundtrip(port, b"GET /next HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    finally:
        server.close()
        await server.wait_closed()
    assert out.startswith(b"HTTP/1.1 200 ")
    assert paths == [b"/next"] and connections == 1
    assert counters.client_disconnects == 1
