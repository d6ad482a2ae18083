"""Analysis in another process than proxying (``--analysis-process``; the default of
``apiward-sensor`` where it may use two CPUs, see ``sensor/cpus.py``).

On one event loop every request pays for its own analysis before the loop can read the next one:
about half of the sensor's CPU per request is analysis (walk, classification, signatures,
behaviour), so at one connection it adds to the latency and under load it halves the throughput.
With ``--analysis-process`` the proxy runs in a child process (``sensor/proxy_process.py``) whose
only extra work is to encode each finished ``Exchange`` (msgpack, ~5 us) and write it, batched per
loop iteration, to a UNIX socket; the parent reads the frames and runs the same pipeline, summaries,
alerts, shipping and admin endpoints as the single-process sensor. On a host with a spare core the
proxy then costs about what a bare aiohttp proxy costs.

Nothing is lost silently: when the parent falls behind, the socket and then the child's write buffer
fill; past ``MAX_PENDING_BYTES`` the child drops exchanges (never requests: the proxy keeps serving)
and counts them; the parent adds the count to the ``dropped_requests`` it reports to the collector
(the data-loss notice) and to ``/metrics``. The parent holds the listening socket, so when the child
dies it starts a new one on the same socket: connections queue in the backlog meanwhile.

Frames: 4-byte big-endian length, then a msgpack ``[kind, data]``: ``"x"`` a list of exchanges,
``"c"`` the child's counters (cumulative, every ``COUNTERS_INTERVAL`` and at exit), ``"r"`` ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

from apiward.logs import get_logger
from apiward.tasks import stop_tasks
from sensor.config import SensorConfig, parse_listen
from sensor.exchange import Exchange, ExchangeSink
from sensor.signatures import Match, ScanResult

log = get_logger("sensor.offload")

MAX_PENDING_BYTES: Final = 32 * 1024 * 1024  # encoded exchanges waiting in the child's write buffer
MAX_FRAME_BYTES: Final = 256 * 1024 * 1024  # a larger length prefix is a corrupt stream
COUNTERS_INTERVAL: Final = 0.5
READY_TIMEOUT: Final = 60.0  # compiling the signatures (enforce mode) takes a few seconds
STOP_GRACE: Final = 15.0  # in-flight requests finish, then the child is killed
RESTART_BACKOFF_MAX: Final = 5.0
_LEN = struct.Struct(">I")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


# -- the encoding of one exchange ---------------------------------------------------------------------


def _pairs(headers: MultiMapping[str]) -> list[tuple[str, str]]:
    # str(): multidict's keys are ``istr``, a str subclass msgpack does not take as is
    return [(str(k), v) for k, v in headers.items()]


def _pack_verdict(verdict: object) -> tuple[Any, ...] | None:
    # enforce mode: the child's gate already scanned the request with the same policies, so the
    # analysis reuses that verdict instead of scanning again (as in one process)
    if not isinstance(verdict, ScanResult):
        return None
    return ([tuple(m) for m in verdict.matches], verdict.score, verdict.blocked)


def _unpack_verdict(packed: Sequence[Any] | None) -> ScanResult | None:
    if packed is None:
        return None
    matches, score, blocked = packed
    return ScanResult(tuple(Match(*m) for m in matches), int(score), bool(blocked))


def pack_exchange(ex: Exchange) -> tuple[Any, ...]:
    return (
        ex.request_id, ex.method, ex.path, ex.query_string, _pairs(ex.request_headers), ex.peer_ip,
        ex.listener_scheme, ex.http_version, ex.request_body, ex.request_body_size, ex.status,
        _pairs(ex.response_headers), ex.response_body, ex.response_body_size, ex.started_at, ex.duration_ms,
        ex.source, ex.client_ip_hint, ex.peer_cert_subject, ex.upstream_error, _pack_verdict(ex.request_verdict),
    )  # fmt: skip


def unpack_exchange(row: Sequence[Any]) -> Exchange:
    (rid, method, path, query, req_headers, peer, scheme, version, req_body, req_size, status,
     resp_headers, resp_body, resp_size, started, duration, source, hint, cert, error, verdict) = row  # fmt: skip
    return Exchange(
        request_id=rid, method=method, path=path, query_string=query,
        request_headers=CIMultiDictProxy(CIMultiDict(req_headers)), peer_ip=peer, listener_scheme=scheme,
        http_version=version, request_body=req_body, request_body_size=req_size, status=status,
        response_headers=CIMultiDictProxy(CIMultiDict(resp_headers)), response_body=resp_body,
        response_body_size=resp_size, started_at=started, duration_ms=duration, source=source,
        client_ip_hint=hint, peer_cert_subject=cert, upstream_error=error, request_verdict=_unpack_verdict(verdict),
    )  # fmt: skip


def frame(kind: str, data: object) -> bytes:
    payload = _encoder.encode((kind, data))
    return _LEN.pack(len(payload)) + payload


class FrameReader(asyncio.Protocol):
    """Splits a byte stream into frames and hands each ``(kind, data)`` to ``on_frame``."""

    def __init__(self, on_frame: Callable[[str, Any], None]) -> None:
        self._on_frame = on_frame
        self._buffer = bytearray()
        self.bad_frames = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        start = 0
        while len(buf) - start >= 4:
            (size,) = _LEN.unpack_from(buf, start)
            if size > MAX_FRAME_BYTES:
                log.error("analysis_channel_corrupt", frame_bytes=size)
                assert self.transport is not None
                self.transport.close()
                return
            if len(buf) - start - 4 < size:
                break
            payload = bytes(buf[start + 4 : start + 4 + size])
            start += 4 + size
            try:
                kind, body = _decoder.decode(payload)
                self._on_frame(kind, body)
            except Exception as exc:  # one bad frame must not stop the channel: counted, logged by type
                self.bad_frames += 1
                log.error("analysis_channel_bad_frame", error=type(exc).__name__)
        del buf[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


# -- the child's side: a sink that writes to the channel ----------------------------------------------


class ChannelSink(ExchangeSink):
    """Collects the exchanges finished during one loop iteration and writes them as one frame."""

    def __init__(self, transport: asyncio.Transport, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self._transport = transport
        self._max_pending = max_pending_bytes
        self._pending: list[tuple[Any, ...]] = []
        self._scheduled = False
        self._loop = asyncio.get_running_loop()
        self.sent = 0
        self.dropped = 0

    def submit(self, exchange: Exchange) -> None:
        self._pending.append(pack_exchange(exchange))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        transport = self._transport
        if transport.is_closing() or transport.get_write_buffer_size() > self._max_pending:
            if not self.dropped:
                log.warning("analysis_behind_dropping", detail="the analysis process does not keep up")
            self.dropped += len(batch)
            return
        transport.write(frame("x", batch))
        self.sent += len(batch)

    def send(self, kind: str, data: object) -> None:
        if not self._transport.is_closing():
            self._transport.write(frame(kind, data))


# -- the parent's side: run and supervise the proxy process -------------------------------------------


def counters_dict(counters: object) -> dict[str, int]:
    return {f.name: int(getattr(counters, f.name)) for f in dataclasses.fields(counters)}  # type: ignore[arg-type]


class ProxyProcess:
    """Starts ``sensor.proxy_process`` on a listening socket this process owns, feeds the exchanges it
    sends to ``sink`` and mirrors its counters into ``counters``; restarts it when it dies."""

    def __init__(self, cfg: SensorConfig, sink: ExchangeSink, counters: object) -> None:
        self.cfg = cfg
        self.sink = sink
        self.counters = counters
        self.received = 0
        self.dropped = 0  # exchanges the child dropped (all children so far)
        self.restarts = 0
        self._base = counters_dict(counters)  # what earlier children counted
        self._dropped_base = 0
        self._listen: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: FrameReader | None = None
        self._ready: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.port = 0

    async def start(self) -> int:
        host, port = parse_listen(self.cfg.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listen = socket.socket(family, socket.SOCK_STREAM)
        try:
            listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listen.bind((host, port))
            listen.listen(1024)
        except BaseException:
            listen.close()
            raise
        self._listen = listen
        self.port = int(listen.getsockname()[1])
        try:
            await self._spawn()
        except BaseException:
            await self.stop()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="proxy-process-supervisor")
        return self.port

    async def _spawn(self) -> None:
        assert self._listen is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listen_fd, chan_fd = self._listen.fileno(), theirs.fileno()
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sensor.proxy_process", str(listen_fd), str(chan_fd),
                stdin=asyncio.subprocess.PIPE, pass_fds=(listen_fd, chan_fd),
            )  # fmt: skip
        finally:
            theirs.close()
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(dataclasses.asdict(self.cfg)).encode())
        self._proc.stdin.close()
        self._ready = ready = asyncio.Event()
        self._dropped_base = self.dropped
        loop = asyncio.get_running_loop()
        _, self._reader = await loop.create_unix_connection(lambda: FrameReader(self._on_frame), sock=ours)
        exited = asyncio.ensure_future(self._proc.wait())
        waiting = asyncio.ensure_future(ready.wait())
        try:
            done, _ = await asyncio.wait({exited, waiting}, timeout=READY_TIMEOUT, return_when="FIRST_COMPLETED")
        finally:
            waiting.cancel()
        if waiting not in done or not ready.is_set():
            exited.cancel()
            code = self._proc.returncode
            if code is None:
                self._proc.kill()
                await self._proc.wait()
            raise RuntimeError(f"the proxy process did not start (exit code {self._proc.returncode})")
        exited.cancel()

    def _on_frame(self, kind: str, data: Any) -> None:
        if kind == "x":
            submit = self.sink.submit
            for row in data:
                self.received += 1
                submit(unpack_exchange(row))
        elif kind == "c":
            self.dropped = self._dropped_base + int(data.pop("analysis_dropped", 0))
            for name, base in self._base.items():
                if name in data:
                    setattr(self.counters, name, base + int(data[name]))
        elif kind == "r" and self._ready is not None:
            self._ready.set()

    async def _supervise(self) -> None:
        backoff = 0.1
        while not self._stopping:
            assert self._proc is not None and self._reader is not None
            code = await self._proc.wait()
            await self._reader.closed  # every frame it wrote has been handled
            if self._stopping:
                return
            self._base = counters_dict(self.counters)
            self.restarts += 1
            log.error("proxy_process_exited", returncode=code, restarts=self.restarts)
            while not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX)
                try:
                    await self._spawn()
                    backoff = 0.1
                    break
                except Exception as exc:
                    log.error("proxy_process_restart_failed", error=str(exc))

    async def stop(self) -> None:
        """SIGTERM: the child stops accepting, lets in-flight requests finish, sends what it holds and
        exits; every exchange it sent is analysed before this returns."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_GRACE):
                    await proc.wait()
            except TimeoutError:
                log.error("proxy_process_kill", detail=f"still running {STOP_GRACE} s after SIGTERM")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._reader.closed
        await stop_tasks([self._supervisor])
        if self._listen is not None:
            self._listen.close()
            self._listen = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


def inherit_socket(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    return sock
