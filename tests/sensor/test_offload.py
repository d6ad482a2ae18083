"""``--analysis-process``: the proxy in a child process, analysis in the parent (sensor/offload.py).

Real processes and sockets: a backend, the proxy child started by ``ProxyProcess`` / ``SensorRuntime``,
aiohttp clients. What must hold: every request is proxied as in one process, every exchange reaches
the parent's pipeline intact, nothing is dropped without being counted, a dead child is replaced on
the same listening socket, and the child never outlives its parent.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from sensor.exchange import Exchange
from sensor.mirror import RECORDS_PATH
from sensor.offload import ChannelSink, FrameReader, ProxyProcess, frame, pack_exchange, unpack_exchange
from sensor.proxy import ProxyCounters
from tests.sensor.proxy_helpers import RecordingSink
from tests.sensor.test_mirror import record

BODY = b'{"id": 7, "email": "someone@example.org", "card": "4111 1111 1111 1111"}'


async def start_backend() -> tuple[web.AppRunner, str]:
    async def item(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json", headers={"X-Backend": "yes"})

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/items/{id}", item)
    app.router.add_post("/items", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def config(upstream: str, tmp_path: Path, **kw: object) -> SensorConfig:
    return SensorConfig(
        upstream=upstream, listen="127.0.0.1:0", window=1.0, state_dir=str(tmp_path / "state"),
        trusted_proxies=["127.0.0.1/32"], analysis_process=True, log_level="warning", **kw,  # type: ignore[arg-type]
    ).validate()  # fmt: skip


def full_exchange() -> Exchange:
    return Exchange(
        request_id="rid-1", method="POST", path="/a/ü b", query_string="x=1&y=%20",
        request_headers=CIMultiDictProxy(CIMultiDict([("Accept", "a"), ("X-Dup", "1"), ("x-dup", "2")])),
        peer_ip="10.0.0.1", listener_scheme="https", http_version="1.0", request_body=b"\x00\xffbody",
        request_body_size=99, status=201, response_headers=CIMultiDictProxy(CIMultiDict([("Set-Cookie", "s=1")])),
        response_body=b"{}", response_body_size=2, started_at=1.5, duration_ms=2.25, source="inline",
        client_ip_hint="81.2.69.1", peer_cert_subject="CN=client", upstream_error="timeout",
    )  # fmt: skip


def test_an_exchange_survives_the_channel_field_for_field() -> None:
    original = full_exchange()
    back = unpack_exchange(pack_exchange(original))
    for name in Exchange.__slots__:  # type: ignore[attr-defined]
        if name.endswith("headers"):
            assert list(getattr(back, name).items()) == list(getattr(original, name).items()), name
        else:
            assert getattr(back, name) == getattr(original, name), name
    assert back.request_headers.getall("x-dup") == ["1", "2"]


async def test_mirror_mode_listens_in_the_child_and_analyses_in_the_parent(tmp_path: Path) -> None:
    cfg = SensorConfig(
        mode="mirror", listen="127.0.0.1:0", window=1.0, state_dir=str(tmp_path / "state"), analysis_process=True,
        log_level="warning", api_name="mirrored",
    ).validate()  # fmt: skip
    runtime = SensorRuntime(cfg)
    await runtime.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime.listen_port}") as client:
            for i in range(20):
                headers = {"X-Original-URI": f"/api/users/{i}?expand=1"}
                async with client.get("/ignored", headers=headers) as resp:
                    assert resp.status == 204
            records = [record(request_id=f"rec-{i}") for i in range(10)]
            async with client.post(RECORDS_PATH, data=json.dumps(records).encode()) as resp:
                assert resp.status == 202 and (await resp.json())["accepted"] == 10
    finally:
        await runtime.stop()
    assert runtime.pipeline.counters.exchanges == 30
    assert runtime.mirror_counters.mirrored_requests == 20  # the child's counters reached the parent
    assert runtime.mirror_counters.records_accepted == 10


async def test_requests_are_proxied_and_every_exchange_is_analysed_in_the_parent(tmp_path: Path) -> None:
    backend, upstream = await start_backend()
    runtime = SensorRuntime(config(upstream, tmp_path, admin_listen="127.0.0.1:0"))
    await runtime.start()
    assert runtime.proxy_process is not None and runtime.proxy_process.pid != os.getpid()
    n = 300
    sent_ids: list[str] = []
    try:
        base = f"http://127.0.0.1:{runtime.listen_port}"
        async with aiohttp.ClientSession(base) as client:

            async def one(i: int) -> None:
                if i % 3 == 0:
                    async with client.post("/items", data=b'{"name": "x%d"}' % i) as resp:
                        assert resp.status == 200 and await resp.read() == b'{"name": "x%d"}' % i
                else:
                    async with client.get(f"/items/{i}", headers={"X-Forwarded-For": "81.2.69.7"}) as resp:
                        assert resp.status == 200 and await resp.read() == BODY
                        assert resp.headers["X-Backend"] == "yes"
                sent_ids.append(resp.headers["X-Request-ID"])

            await asyncio.gather(*(one(i) for i in range(n)))
            async with client.get(f"http://127.0.0.1:{runtime.admin_port}/metrics") as resp:
                metrics = await resp.text()
        assert "apiward_sensor_analysis_dropped_total 0.0" in metrics
    finally:
        await runtime.stop()
        await backend.cleanup()
    # stop() returns after the child exited and everything it sent was analysed
    assert runtime.proxy_process.pid is not None
    assert runtime.pipeline.counters.exchanges == n
    assert runtime.proxy_counters.requests == n  # the child's counters reached the parent
    assert runtime.proxy_process.received == n and runtime.analysis_dropped == 0
    assert len(set(sent_ids)) == n
    assert runtime.pipeline.counters.analysis_errors == 0


async def test_a_killed_proxy_process_is_replaced_on_the_same_socket(tmp_path: Path) -> None:
    backend, upstream = await start_backend()
    sink = RecordingSink()
    counters = ProxyCounters()
    proc = ProxyProcess(config(upstream, tmp_path), sink, counters)
    port = await proc.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            for i in range(5):
                async with client.get(f"/items/{i}") as resp:
                    assert resp.status == 200
            await sink.wait_for(5)
            deadline = time.monotonic() + 5
            while counters.requests < 5:  # counters arrive every 0.5 s; a SIGKILL loses at most that
                assert time.monotonic() < deadline, counters
                await asyncio.sleep(0.05)
            first = proc.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while proc.pid == first or proc.restarts < 1:
                assert time.monotonic() < deadline, "the proxy process was not restarted"
                await asyncio.sleep(0.05)
            # a new client connection reaches the new child through the same listening socket
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as fresh:
                for i in range(5):
                    async with fresh.get(f"/items/{i}") as resp:
                        assert resp.status == 200
            await sink.wait_for(10)
            deadline = time.monotonic() + 5
            while counters.requests < 10:  # counters continue across children instead of resetting
                assert time.monotonic() < deadline, counters
                await asyncio.sleep(0.05)
    finally:
        await proc.stop()
        await backend.cleanup()
    assert proc.restarts == 1


async def test_the_proxy_process_exits_when_its_parent_goes_away(tmp_path: Path) -> None:
    backend, upstream = await start_backend()
    proc = ProxyProcess(config(upstream, tmp_path), RecordingSink(), ProxyCounters())
    await proc.start()
    child = proc._proc
    try:
        assert child is not None and proc._reader is not None and proc._reader.transport is not None
        proc._stopping = True  # the supervisor must not restart it: we play a dead parent
        proc._reader.transport.close()  # what the kernel does to the channel when the parent dies
        await asyncio.wait_for(child.wait(), 15)
        assert child.returncode == 0  # a clean, graceful exit, not a kill
    finally:
        await proc.stop()
        await backend.cleanup()


async def test_enforce_mode_blocks_in_the_proxy_process(tmp_path: Path) -> None:
    backend, upstream = await start_backend()
    runtime = SensorRuntime(config(upstream, tmp_path, enforce=True))
    await runtime.start()
    scans_before = runtime.pipeline.signatures.scans
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime.listen_port}") as client:
            async with client.get("/items/1", params={"q": "1' UNION SELECT password FROM users--"}) as resp:
                assert resp.status == 403
                assert (await resp.json())["rule_ids"]
            async with client.get("/items/2") as resp:
                assert resp.status == 200
    finally:
        await runtime.stop()
        await backend.cleanup()
    assert runtime.proxy_counters.blocked == 1
    assert runtime.pipeline.counters.exchanges == 2
    assert runtime.pipeline.counters.attacks == 1
    # the child's gate verdicts came over the channel: no second scan here
    assert runtime.pipeline.signatures.scans == scans_before


async def test_exchanges_are_dropped_and_counted_when_the_reader_stops_reading() -> None:
    """Back-pressure: a parent that stops reading fills the socket, then the child's buffer; beyond
    the bound exchanges are dropped, and every one is either sent or counted."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_unix_connection(lambda: FrameReader(lambda kind, data: None), sock=ours)
    sink = ChannelSink(transport, max_pending_bytes=256 * 1024)
    exchange = full_exchange()
    exchange.response_body = b"x" * 16 * 1024
    total = 0
    try:
        for _ in range(200):  # 200 loop iterations x 10 exchanges of ~16 KiB; nobody reads `theirs`
            for _ in range(10):
                sink.submit(exchange)
                total += 1
            await asyncio.sleep(0)
        sink.flush()
        assert sink.dropped > 0
        assert sink.sent + sink.dropped == total
        assert transport.get_write_buffer_size() <= 256 * 1024 + 11 * len(frame("x", [pack_exchange(exchange)]))
    finally:
        transport.abort()
        theirs.close()


async def test_a_bad_frame_is_counted_and_the_channel_goes_on() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    received: list[tuple[str, object]] = []
    loop = asyncio.get_running_loop()
    transport, reader = await loop.create_unix_connection(
        lambda: FrameReader(lambda kind, data: received.append((kind, data))), sock=ours
    )
    try:
        good = frame("c", {"requests": 1})
        not_msgpack = b"\xc1\xc1\xc1"  # 0xc1 is never used in msgpack
        theirs.sendall(good + len(not_msgpack).to_bytes(4, "big") + not_msgpack + good)
        deadline = time.monotonic() + 5
        while len(received) < 2:
            assert time.monotonic() < deadline, received
            await asyncio.sleep(0.01)
        assert received == [("c", {"requests": 1}), ("c", {"requests": 1})]
        assert reader.bad_frames == 1
    finally:
        transport.close()
        theirs.close()


async def test_tls_listener_with_client_certificates_in_the_proxy_process(tmp_path: Path, pki: Path) -> None:
    """The proxy process serves the TLS listener: the client certificate's subject reaches the
    analysis process and counts as mTLS evidence; a request without one is served too."""
    backend, upstream = await start_backend()
    runtime = SensorRuntime(config(upstream, tmp_path, tls_cert=str(pki / "server.pem"),
                                   tls_key=str(pki / "server.key"), tls_client_ca=str(pki / "ca.pem")))
    await runtime.start()
    seen: list[Exchange] = []
    pipeline = runtime.pipeline

    class SpyingSink:
        def submit(self, ex: Exchange) -> None:
            seen.append(ex)
            pipeline.submit(ex)

    assert runtime.proxy_process is not None
    runtime.proxy_process.sink = SpyingSink()  # what the channel hands on, before the pipeline sees it
    with_cert = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with_cert.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    without_cert = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    try:
        assert runtime.proxy_process is not None
        async with aiohttp.ClientSession() as session:
            for context in (with_cert, without_cert):
                async with session.get(f"https://127.0.0.1:{runtime.listen_port}/items/1", ssl=context) as resp:
                    assert resp.status == 200
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await runtime.stop()
        await backend.cleanup()
    first, second = seen
    assert first.peer_cert_subject == "CN=client,O=Acme" and first.listener_scheme == "https"
    assert second.peer_cert_subject is None
    assert runtime.pipeline.analyse(first)[0].auth.schemes == ("mtls",)
