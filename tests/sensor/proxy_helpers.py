"""Test helpers for the capture layer: real upstream servers, raw sockets, a proxy in a subprocess.

Run as ``python -m tests.sensor.proxy_helpers --upstream URL --port N`` to start a proxy process (used
by the memory-bounded streaming test, which samples the process's RSS from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict

from apiward.logs import configure_logging
from sensor.config import SensorConfig
from sensor.exchange import Exchange, ExchangeSink
from sensor.proxy import ProxyCounters, start_proxy
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


class RecordingSink(ExchangeSink):
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def submit(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Exchange]:
        deadline = time.monotonic() + timeout
        while len(self.exchanges) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} exchanges, got {len(self.exchanges)}")
            await asyncio.sleep(0.01)
        return self.exchanges


class RaisingSink(ExchangeSink):
    def __init__(self) -> None:
        self.calls = 0

    def submit(self, exchange: Exchange) -> None:
        self.calls += 1
        raise RuntimeError("analysis exploded")


class CountingSink(ExchangeSink):
    """Keeps nothing (the 1 GiB test must not hold exchanges); counts sizes only."""

    def __init__(self) -> None:
        self.count = 0
        self.request_bytes = 0
        self.response_bytes = 0

    def submit(self, exchange: Exchange) -> None:
        self.count += 1
        self.request_bytes += exchange.request_body_size
        self.response_bytes += exchange.response_body_size


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes
    peer_port: int


Handler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


async def _echo(request: web.Request, body: bytes) -> web.StreamResponse:
    return web.Response(body=body, headers={"X-Upstream": "yes"})


@dataclass
class Upstream:
    """A real aiohttp server that records what reached it. Connections are counted by peer port."""

    handler: Handler = _echo
    auto_decompress: bool = False
    seen: list[Seen] = field(default_factory=list)
    peer_ports: set[int] = field(default_factory=set)
    aborted_uploads: int = 0
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        peer_port = int(peer[1]) if peer else 0
        self.peer_ports.add(peer_port)
        try:
            body = await request.read()
        except ConnectionError:
            # the proxy cut an upload short (cap, stall): what the test wants to see happen
            self.aborted_uploads += 1
            raise
        self.seen.append(Seen(request.method, request.raw_path, CIMultiDict(request.headers), body, peer_port))
        return await self.handler(request, body)

    async def start(self) -> Upstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, auto_decompress=self.auto_decompress, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class RawRequest:
    head: bytes
    body_wire: bytes  # the body bytes exactly as framed on the wire (chunk sizes included)


class RawUpstream:
    """A byte-level HTTP/1.1 upstream: records each request's head and body *as framed on the wire*
    and answers with a fixed raw response. Used to see exactly what aiohttp's client sends."""

    def __init__(self, response: bytes | None = None) -> None:
        self.response = response or b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        self.requests: list[RawRequest] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lower = head.lower()
                wire = b""
                if b"transfer-encoding: chunked" in lower:
                    while True:
                        size_line = await reader.readuntil(b"\r\n")
                        size = int(size_line.split(b";")[0], 16)
                        data = await reader.readexactly(size + 2)
                        wire += size_line + data
                        if size == 0:
                            break
                else:
                    for line in lower.split(b"\r\n"):
                        if line.startswith(b"content-length:"):
                            wire = await reader.readexactly(int(line.split(b":")[1]))
                self.requests.append(RawRequest(head, wire))
                writer.write(self.response)
                await writer.drain()
        finally:
            writer.close()

    async def start(self) -> RawUpstream:
        self.port = free_port()
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@contextlib.asynccontextmanager
async def running_proxy(
    cfg: SensorConfig, sink: ExchangeSink, counters: ProxyCounters | None = None, **kwargs: object
) -> AsyncIterator[tuple[int, ProxyCounters]]:
    counters = counters if counters is not None else ProxyCounters()
    port = free_port()
    runner = await start_proxy(cfg, sink, "127.0.0.1", port, counters, **kwargs)  # type: ignore[arg-type]
    try:
        yield port, counters
    finally:
        await runner.cleanup()


async def raw_roundtrip(port: int, data: bytes, timeout: float = 3.0, *, ssl: object = None) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(timeout):
                while chunk := await reader.read(65536):
                    out += chunk
        return out
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose TCP handshake never completes: a listener with a full accept queue (backlog 0,
    never accepting, already holding connections) makes the kernel drop further SYNs, which is what
    a connect timeout looks like, without needing an unroutable address."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(3):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# ---------------------------------------------------------------------------------------------------
# a proxy in its own process, with RSS sampling


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class RssSampler:
    """Samples the summed RSS of processes every 20 ms in a thread (the event loop is busy moving bytes)."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, sum(rss_bytes(pid) for pid in self.pids))
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class ProxyProcess:
    def __init__(self, upstream: str, **cfg: object) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "tests.sensor.proxy_helpers", "--upstream", upstream, "--port", str(self.port)]
        for key, value in cfg.items():
            args += [f"--{key}", str(value)]
        # stderr goes to a file: a pipe nobody reads could fill up and stall the proxy.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.stderr)

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the child prints READY once listening (or dies)
        if b"READY" not in line:
            self.stderr.seek(0)
            raise RuntimeError(f"proxy process did not start: {line!r} {self.stderr.read()[-2000:]!r}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            self.stderr.close()
            return out.decode(errors="replace")
        self.stderr.close()
        return ""


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--inspect_bytes", type=int, default=64 * 1024)
    args = parser.parse_args()

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    configure_logging("warning", component="sensor", stream=sys.stderr)

    async def run() -> None:
        cfg = SensorConfig(upstream=args.upstream, inspect_bytes=args.inspect_bytes, read_timeout=30)
        sink = CountingSink()
        runner = await start_proxy(cfg, sink, "127.0.0.1", args.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("READY", os.getpid(), flush=True)
        await stop.wait()
        await runner.cleanup()
        print(f"EXCHANGES {sink.count} {sink.request_bytes} {sink.response_bytes}", flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    _main()
