"""The inline proxy's fast path: plain API requests proxied at the protocol level.

aiohttp's server and client cost about 200 microseconds of CPU per proxied request (request and
response objects, header multidicts, a task, timeouts as context managers, a connector lookup); the
analysis the sensor exists for has to fit beside that. Most API traffic is the same simple shape: an
origin-form ``GET``/``POST``... over HTTP/1.1 with a small ``Content-Length`` body or none. This module
proxies exactly that shape with asyncio protocols and the llhttp parser (``httptools``), and hands
every other connection, with the bytes already read, to the aiohttp path in ``sensor.proxy`` (set
before any byte went upstream), which keeps its established answers to everything unusual:

* delegated: a request head that is not clean CRLF text (bare LF, NUL, obs-fold), over the header
  bounds, HTTP versions other than 1.0/1.1, ``Transfer-Encoding``, ``Expect``, ``Upgrade``, repeated
  or invalid ``Content-Length``, a body over ``SMALL_BODY`` or over the configured cap, methods other
  than the plain ones (``HEAD``: its response has a length but no body), non-origin-form targets; TLS
  listeners use the aiohttp path for the whole listener.
* the fast path keeps the proxy's contract: hop-by-hop headers stripped, ``X-Forwarded-*`` and
  ``X-Request-ID`` set, the upstream chosen by configuration only, bytes passed unchanged (bodies are
  never decoded), 502/504 problem answers with the request id, the circuit breaker, the keep-alive,
  body and read timeouts, the enforce-mode gate before anything goes upstream, and the ``Exchange``
  handed to the sink after the client has its answer.

Upstream connections (``sensor/fastpath_upstream.py``) are pooled (``cfg.pool_size`` at most, idle
ones closed after ``cfg.upstream_keepalive_timeout``). Responses up to ``SMALL_BODY`` with a declared length are read
whole and written with their head in one write (an upstream failure before that is still a clean
502); anything else streams with backpressure: the upstream socket is paused while the client's is
full, and a client that reads nothing for ``client_body_timeout`` is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

import httptools
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from apiward.logs import get_logger
from sensor.exchange import EMPTY_HEADERS, Exchange
from sensor.fastpath_upstream import UpstreamConnection
from sensor.http_common import (
    ERRNO_NAMES,
    HEADER_TOTAL_FACTOR,
    HOP_BY_HOP,
    MAX_HEADER_COUNT,
    PROXY_SET_REQUEST_HEADERS,
    SMALL_BODY,
    decode_path,
    log_request_proxied,
    problem_response,
    sane_request_id,
)

log = get_logger("sensor.fastpath")

PIPELINE_BUFFER = 256 * 1024  # client bytes buffered while a request is in flight, then reading pauses
STOP_GRACE = 5.0  # seconds stop() waits for requests in flight

_FAST_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "OPTIONS"})  # retried once after a keep-alive race
# Request headers never forwarded as sent: hop-by-hop, those the proxy sets itself (X-Forwarded-For is
# rebuilt here with the client's earlier hops first).
_REQUEST_DROP = frozenset(
    name.lower().encode() for name in (*HOP_BY_HOP, *PROXY_SET_REQUEST_HEADERS, "x-forwarded-for")
)
_RESPONSE_DROP = frozenset(name.encode() for name in HOP_BY_HOP | {"x-request-id"})
# Fields that may appear once (aiohttp's SINGLETON_HEADERS): a second Host is a classic smuggling and
# cache-poisoning lever, so a head carrying any twice goes to the aiohttp path, which refuses it.
_SINGLETON_HEADERS = frozenset({b"content-length", b"content-location", b"content-range", b"content-type", b"etag",
                                b"host", b"max-forwards", b"server", b"transfer-encoding", b"user-agent"})


def _http_date(_cache: list[Any] = [0, b""]) -> bytes:  # noqa: B006 - a per-second cache on purpose
    now = int(time.time())
    if _cache[0] != now:
        _cache[0] = now
        _cache[1] = formatdate(now, usegmt=True).encode("ascii")
    return _cache[1]  # type: ignore[no-any-return]


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def _clean_head(head: bytes) -> bool:
    """CRLF-only lines, no NUL or other control bytes the aiohttp path answers on its own terms, no
    obs-fold (a continuation line starting with a space or tab)."""
    if b"\x00" in head or head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\n"):
        return False
    return b"\r\n " not in head and b"\r\n\t" not in head


class _Request:
    """One parsed request head: the httptools callbacks fill it."""

    __slots__ = ("content_length", "headers", "method", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.method = ""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp strips the whitespace before a field value, not after it (aiohttp strips both)
        self.headers.append((name, value.rstrip(b" \t")))


def _str_headers(pairs: list[tuple[bytes, bytes]]) -> CIMultiDictProxy[str]:
    """Raw header pairs as the aiohttp path's Exchange has them (values UTF-8, bad bytes kept)."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        out.add(name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
    return CIMultiDictProxy(out)


class FastFront:
    """Shared state of the fast path for one listener: the upstream pool and the aiohttp fallback."""

    def __init__(
        self, state: Any, fallback: web.Server, loop: asyncio.AbstractEventLoop, client: type[_Client] | None = None
    ) -> None:
        # sensor.proxy._ProxyState (not imported: sensor.proxy imports this module), or the mirror
        # listener's state with ``client`` = its own connection class (sensor/fastpath_mirror.py)
        self.state = state
        self.cfg = state.cfg
        self.fallback = fallback
        self.loop = loop
        self.client_class = client or _Client
        self.upstream_host, self.upstream_port, self.host_header, self.prefix = "", 80, b"", b""
        if self.cfg.upstream:  # the mirror listener has none
            upstream = URL(self.cfg.upstream)
            self.upstream_host = upstream.host or ""
            self.upstream_port = upstream.port or 80
            self.host_header = upstream.host_port_subcomponent.encode("ascii") \
                if upstream.host_port_subcomponent else self.upstream_host.encode()
            self.prefix = upstream.raw_path.rstrip("/").encode()
        self.head_limit = HEADER_TOTAL_FACTOR * self.cfg.max_header_bytes
        self.idle: deque[UpstreamConnection] = deque()
        self.upstream_count = 0
        self.clients: set[_Client] = set()
        self.waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self.drained: asyncio.Event | None = None  # set when the last client leaves during stop()
        self.closing = False

    def protocol(self) -> _Client:
        return self.client_class(self)

    # -- upstream pool ---------------------------------------------------------------------------
    def take_idle(self) -> UpstreamConnection | None:
        while self.idle:
            conn = self.idle.pop()  # most recently used first: its socket is the least likely stale
            if conn.usable():
                conn.idle_since = 0.0
                return conn
        return None

    def release(self, conn: UpstreamConnection) -> None:
        if self.closing or not conn.usable():
            conn.close()
            return
        while self.waiters:  # a request waiting at the pool limit takes it directly
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)
        if conn.idle_timer is None:
            conn.idle_timer = self.loop.call_later(self.cfg.upstream_keepalive_timeout, conn.idle_check)

    def forget(self, conn: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def slot_freed(self) -> None:
        """An upstream connection closed: the first request waiting at the pool limit may open one."""
        self.upstream_count -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def wait_for_connection(self) -> UpstreamConnection | None:
        """At the pool limit: a connection someone releases, or None when a slot frees up (connect
        then). Bounded by the connect timeout (TimeoutError)."""
        waiter: asyncio.Future[UpstreamConnection | None] = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(self.cfg.connect_timeout):
                return await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    def client_gone(self, client: _Client) -> None:
        self.clients.discard(client)
        if self.drained is not None and not self.clients:
            self.drained.set()

    async def stop(self) -> None:
        """Close idle client connections now, let requests in flight finish (bounded), close the pool."""
        self.closing = True
        for client in list(self.clients):
            client.close_when_idle()
        if self.clients:
            self.drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE):
                    await self.drained.wait()
        for client in list(self.clients):
            client.abort()
        while self.idle:
            self.idle.pop().close()


class _Client(asyncio.Protocol):
    """One client connection on the fast path (until it is delegated to aiohttp)."""

    def __init__(self, front: FastFront) -> None:
        self.front = front
        self.state = front.state
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.peer = ""
        self.idle_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.busy = False
        self.gone = False
        self.closing = False
        self.client_paused = False
        self.reading_paused = False
        self.last_body = 0.0
        self.idle_since = 0.0
        self.connecting: asyncio.Task[None] | None = None  # held: a task nobody references can be collected
        self.reset_request()

    def reset_request(self) -> None:
        self.req: _Request | None = None
        self.head_len = 0
        self.keep_alive = False
        self.version = "1.1"
        self.rid = ""
        self.started_at = 0.0
        self.t0 = 0.0
        self.request_body = b""
        self.upstream: UpstreamConnection | None = None
        self.upstream_data = b""
        self.retried = False
        self.probe = False
        self.gate_exchange: Exchange | None = None  # what the enforce gate was shown
        # the response side
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.response_prefix = bytearray()
        self.response_size = 0
        self.small = False
        self.small_body = bytearray()
        self.chunked_out = False
        self.close_after = False
        self.started = False  # status line and headers written to the client
        self.error: str | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        self.front.clients.add(self)
        if self.front.closing:
            transport.close()
            return
        self.arm_idle()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.busy:
            if self.req is not None and self.upstream is None and self.body_timer is not None:
                self.last_body = self.front.loop.time()
                self.try_body()
            elif len(self.buf) > PIPELINE_BUFFER and not self.reading_paused and self.transport is not None:
                self.reading_paused = True
                self.transport.pause_reading()
            return
        self.try_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.client_gone(self)
        self.cancel_timers()
        if self.busy and not self.gone:
            self.gone = True
            self.state.counters.client_disconnects += 1
            self.error = self.error or "client_disconnect"
            if self.upstream is None and self.req is not None:  # still reading the body: nothing went upstream
                self.finish(submit=self.keep_unfinished())
            elif self.upstream is not None and self.started and not self.small:
                # The rest of a streamed body has nowhere to go; the connection can't be reused.
                conn, self.upstream = self.upstream, None
                conn.flight = None
                conn.close()
                self.finish()

    def keep_unfinished(self) -> bool:
        """The client left while its body was being read: analyse what arrived? A proxied request
        that never went upstream is not an exchange (the mirror listener's answer differs)."""
        return False

    def pause_writing(self) -> None:
        self.client_paused = True
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()
        if self.write_timer is None:
            self.write_timer = self.front.loop.call_later(self.front.cfg.client_body_timeout, self.write_stalled)

    def resume_writing(self) -> None:
        self.client_paused = False
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    # -- timers ----------------------------------------------------------------------------------
    def arm_idle(self) -> None:
        # Counted from when the connection starts waiting for a request head and NOT moved by partial
        # data: it also bounds a head trickled in slowly (slowloris), as aiohttp's keep-alive timer
        # does. One timer per connection, re-armed only when it fires (cheaper than per request).
        self.idle_since = self.front.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.front.loop.call_later(self.front.cfg.keepalive_timeout, self.idle_expired)

    def idle_expired(self) -> None:
        self.idle_timer = None
        if self.busy or self.transport is None:
            return  # finish() arms it again
        remaining = self.idle_since + self.front.cfg.keepalive_timeout - self.front.loop.time()
        if remaining > 0:
            self.idle_timer = self.front.loop.call_later(remaining, self.idle_expired)
            return
        self.transport.close()

    def body_check(self) -> None:
        self.body_timer = None
        if not self.busy or self.upstream is not None or self.req is None:
            return
        remaining = self.last_body + self.front.cfg.client_body_timeout - self.front.loop.time()
        if remaining > 0:
            self.body_timer = self.front.loop.call_later(remaining, self.body_check)
            return
        self.state.counters.client_body_timeouts += 1
        self.error = "client_body_timeout"
        self.request_body = bytes(self.buf[self.head_len:])  # what arrived (never forwarded)
        self.buf.clear()
        detail = f"no request body data for {self.front.cfg.client_body_timeout:g} s"
        self.answer(408, "Request Timeout", detail, close=True)

    def write_stalled(self) -> None:
        self.write_timer = None
        if not self.client_paused:
            return
        self.error = "client_disconnect"
        if self.upstream is not None:
            conn, self.upstream = self.upstream, None
            conn.flight = None
            conn.close()
        self.state.counters.client_disconnects += 1
        self.gone = True
        self.abort()
        self.finish()

    def cancel_timers(self) -> None:
        for timer in (self.idle_timer, self.body_timer, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.idle_timer = self.body_timer = self.write_timer = None

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.busy and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- request side ----------------------------------------------------------------------------
    def try_head(self) -> None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.front.head_limit or (b"\n\n" in buf) or (b"\x00" in buf):
                self.delegate()
            return
        head = bytes(buf[: end + 4])
        req = self.parse_head(head)
        if req is None:
            self.delegate()
            return
        self.busy = True
        self.req = req
        self.head_len = end + 4
        self.started_at = time.time()
        self.t0 = time.perf_counter()
        self.state.counters.requests += 1
        if req.content_length:
            self.last_body = self.front.loop.time()
            self.body_timer = self.front.loop.call_later(self.front.cfg.client_body_timeout, self.body_check)
        self.try_body()

    def parse_head(self, head: bytes) -> _Request | None:
        """The request head when the fast path can serve it, else None (delegate)."""
        front = self.front
        if len(head) > front.head_limit or not _clean_head(head):
            return None
        req = _Request()
        parser = httptools.HttpRequestParser(req)
        try:
            parser.feed_data(head)
        except httptools.HttpParserError:
            return None
        version = parser.get_http_version()
        if version not in ("1.1", "1.0") or parser.should_upgrade():
            return None
        method = parser.get_method().decode("ascii", "replace")
        if method not in _FAST_METHODS or not req.url.startswith(b"/"):
            return None
        limit = front.cfg.max_header_bytes
        if len(req.headers) > MAX_HEADER_COUNT or head.find(b"\r\n") > limit:
            return None  # too many fields, or a request line over the per-line bound
        length: int | None = None
        tokens: set[bytes] = set()
        singletons: set[bytes] = set()
        for name, value in req.headers:
            if len(name) + len(value) + 2 > limit:
                return None
            lower = name.lower()
            if lower in _SINGLETON_HEADERS:
                if lower in singletons:
                    return None  # aiohttp's parser answers a repeated Host, Content-Type ... with 400
                singletons.add(lower)
            if lower == b"connection":
                tokens.update(t.strip().lower() for t in value.split(b","))
            elif lower == b"content-length":
                if length is not None or not value.isdigit():
                    return None
                length = int(value)
            elif lower in (b"transfer-encoding", b"expect", b"upgrade"):
                return None
        if length is not None:
            cap = front.cfg.max_body_bytes
            if length > SMALL_BODY or (cap is not None and length > cap):
                return None
        req.method = method
        req.content_length = length
        self.version = version
        # Decided here, not by the parser: llhttp resets its flags once the message is complete.
        self.keep_alive = b"close" not in tokens if version == "1.1" else b"keep-alive" in tokens
        return req

    def try_body(self) -> None:
        req = self.req
        assert req is not None
        need = self.head_len + (req.content_length or 0)
        if len(self.buf) < need:
            return
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        self.request_body = bytes(self.buf[self.head_len:need])
        del self.buf[:need]
        self.send_upstream()

    def delegate(self) -> None:
        """Hand this connection, with every byte read and not yet served, to the aiohttp path."""
        transport = self.transport
        assert transport is not None
        self.cancel_timers()
        self.front.client_gone(self)
        self.state.counters.fast_path_handoffs += 1
        handler = self.front.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.reading_paused:
            transport.resume_reading()
        data, self.buf = bytes(self.buf), bytearray()
        if data:
            handler.data_received(data)
        self.transport = None

    # -- upstream --------------------------------------------------------------------------------
    def upstream_request(self) -> bytes:
        req = self.req
        assert req is not None
        headers = req.headers
        named: set[bytes] = set()
        prior: list[bytes] = []
        client_host = b""
        rid_in: str | None = None
        for name, value in headers:
            lower = name.lower()
            if lower == b"connection":
                named.update(t.strip().lower() for t in value.split(b",") if t.strip())
            elif lower == b"x-forwarded-for":
                if value.strip():
                    prior.append(value.strip())
            elif lower == b"host":
                client_host = client_host or value
            elif lower == b"x-request-id" and rid_in is None:
                rid_in = value.decode("latin-1")
        self.rid = sane_request_id(rid_in)
        front = self.front
        path, _, _frag = req.url.partition(b"#")
        out = [req.method.encode(), b" ", front.prefix, path, b" HTTP/1.1\r\nHost: ", front.host_header, b"\r\n"]
        for name, value in headers:
            lower = name.lower()
            if lower in _REQUEST_DROP or (named and lower in named):
                continue
            out += (name, b": ", value, b"\r\n")
        peer = self.peer.encode()
        xff = b", ".join([*prior, peer]) if peer else b", ".join(prior)
        if xff:
            out += (b"X-Forwarded-For: ", xff, b"\r\n")
        out.append(b"X-Forwarded-Proto: http\r\n")
        if client_host:
            out += (b"X-Forwarded-Host: ", client_host, b"\r\n")
        out += (b"X-Request-ID: ", self.rid.encode(), b"\r\n")
        if req.content_length is not None:
            out += (b"Content-Length: ", str(req.content_length).encode(), b"\r\n")
        elif req.method in ("POST", "PUT", "PATCH"):
            out.append(b"Content-Length: 0\r\n")  # as aiohttp's client frames a bodiless POST
        out.append(b"\r\n")
        if self.request_body:
            out.append(self.request_body)
        return b"".join(out)

    def send_upstream(self) -> None:
        self.upstream_data = self.upstream_request()
        gate = self.state.request_gate
        if gate is not None:
            self.run_gate(gate)
            return
        self.forward()

    # -- enforce mode ----------------------------------------------------------------------------
    def run_gate(self, gate: Any) -> None:
        """Ask the request gate (enforce mode) before anything goes upstream. The gate is a
        coroutine function; the sensor's own never awaits, so it is run to completion here without
        a task. One that does await is driven on by a task. A gate that raises fails open."""
        assert self.req is not None
        # The gate sees the whole request here (bodies on this path are read whole); the verdict it
        # leaves on the exchange is handed on to the analysis, which then does not scan again.
        self.gate_exchange = self.exchange(self.req)
        coro = gate(None, self.gate_exchange)  # no aiohttp request on this path
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            self.gate_verdict(done.value)
            return
        except Exception as exc:
            self.gate_failed(exc)
            return
        self.connecting = self.front.loop.create_task(self.drive_gate(coro, waiting))

    async def drive_gate(self, coro: Any, waiting: Any) -> None:
        try:
            while True:
                if waiting is None:
                    await asyncio.sleep(0)  # a bare yield (asyncio.sleep(0) inside the gate)
                else:
                    # What a Task does with a yielded future: clear its "blocking" mark, wait for it;
                    # its result or exception reaches the gate when the gate is resumed.
                    waiting._asyncio_future_blocking = False
                    await asyncio.wait([waiting])
                waiting = coro.send(None)
        except StopIteration as done:
            self.gate_verdict(done.value)
        except Exception as exc:
            self.gate_failed(exc)

    def gate_failed(self, exc: BaseException) -> None:
        # Fail open: a broken verdict must not take the API down. The type only: a message can
        # quote request data.
        self.state.counters.analysis_errors += 1
        log.warning("request_gate_failed", error=type(exc).__name__)
        self.forward()

    def gate_verdict(self, blocked: web.StreamResponse | None) -> None:
        if self.req is None:
            return  # the client left while an awaiting gate decided (finish() has run)
        if blocked is None:
            self.forward()
            return
        if self.gone:
            self.finish()
            return
        self.state.counters.blocked += 1
        self.error = "blocked"
        # An attacker's connection is closed after the block unless the answer asks to keep it.
        self.send_own(blocked, close=blocked.keep_alive is not True)

    # -- upstream (continued) --------------------------------------------------------------------
    def forward(self) -> None:
        if self.req is None:
            return  # the client left while an awaiting gate decided (finish() has run)
        breaker = self.state.breaker
        self.probe = breaker.is_open
        if not breaker.allow():
            self.state.counters.circuit_open_502 += 1
            self.error = "circuit_open"
            self.answer(502, "Bad Gateway", "upstream unreachable; failing fast while the circuit breaker is open",
                        close=True)
            return
        conn = self.front.take_idle()
        if conn is not None:
            conn.reused = True
            self.upstream = conn
            breaker.connected()
            conn.start(self, self.upstream_data)
            return
        self.connecting = self.front.loop.create_task(self.connect())

    async def connect(self) -> None:
        front = self.front
        breaker = self.state.breaker
        if front.upstream_count >= front.cfg.pool_size:
            # At the pool limit: wait (bounded by the connect timeout) for a connection to come back
            # or a slot to free up. Not a connect failure: the breaker is not told.
            try:
                conn = await front.wait_for_connection()
            except TimeoutError:
                self.upstream_failed("connect_timeout", None)
                return
            if conn is not None:
                if self.gone:
                    front.release(conn)
                    self.finish(submit=False)
                    return
                conn.reused = True
                self.upstream = conn
                conn.start(self, self.upstream_data)
                return
        front.upstream_count += 1
        try:
            async with asyncio.timeout(front.cfg.connect_timeout):
                _, conn = await front.loop.create_connection(
                    lambda: UpstreamConnection(front), front.upstream_host, front.upstream_port
                )
        except (OSError, TimeoutError) as exc:
            front.upstream_count -= 1
            kind = "connect_timeout" if isinstance(exc, TimeoutError) else \
                ERRNO_NAMES.get(getattr(exc, "errno", 0) or 0, "connect_error")
            if breaker.connect_failed():
                self.state.counters.circuit_opened += 1
                log.warning("upstream_circuit_open", failures=breaker.failures, cooldown_s=breaker.cooldown)
            self.upstream_failed(kind, None)
            return
        breaker.connected()
        if self.gone:
            front.release(conn)
            self.finish(submit=False)
            return
        self.upstream = conn
        conn.start(self, self.upstream_data)

    def upstream_raced(self, conn: UpstreamConnection) -> None:
        """A pooled connection closed as the request was sent (the upstream's keep-alive ended)."""
        self.upstream = None
        if not self.retried and self.req is not None and self.req.method in _IDEMPOTENT and not self.gone:
            self.retried = True
            fresh = self.front.take_idle()
            if fresh is not None:
                fresh.reused = True
                self.upstream = fresh
                fresh.start(self, self.upstream_data)
            else:
                self.connecting = self.front.loop.create_task(self.connect())
            return
        self.upstream_failed("disconnected", conn)

    def upstream_failed(self, kind: str, conn: UpstreamConnection | None) -> None:
        self.upstream = None
        if self.probe and self.state.breaker.probing:
            self.state.breaker.inconclusive()
        counters = self.state.counters
        if self.started:
            # Too late for a status code: the client sees a truncated body, never a clean end.
            counters.upstream_aborts += 1
            self.error = "upstream_timeout" if kind == "read_timeout" else "upstream_aborted"
            self.abort()
            self.finish()
            return
        if self.gone:
            self.error = self.error or "client_disconnect"
            self.finish()
            return
        self.error = kind
        if kind in ("read_timeout", "connect_timeout"):
            counters.upstream_timeouts_504 += 1
            detail = "the upstream did not answer in time" if kind == "read_timeout" else "connecting timed out"
            log.info("upstream_timeout", kind=kind, upstream=self.front.cfg.upstream)
            self.answer(504, "Gateway Timeout", detail)
            return
        counters.upstream_errors_502 += 1
        log.info("upstream_error", kind=kind, upstream=self.front.cfg.upstream)
        self.answer(502, "Bad Gateway", f"upstream error: {kind}")

    # -- response side ---------------------------------------------------------------------------
    def response_head(self, conn: UpstreamConnection) -> None:
        status = conn.status
        self.status = status
        if self.probe and self.state.breaker.probing:
            self.state.breaker.connected()
        if status < 200:
            # Interim answers go to HTTP/1.1 clients only (RFC 9110 15.2); 100 answers an Expect
            # the sensor handled itself (requests with Expect take the aiohttp path).
            if not self.gone and self.transport is not None and status != 100 and self.version == "1.1":
                self.write_head(conn, interim=True)
            return
        length: int | None = None
        chunked = False
        for name, value in conn.headers:
            lower = name.lower()
            if lower == b"content-length" and value.isdigit():
                length = int(value)
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        bodiless = status in (204, 304)
        if chunked:
            length = None
        self.small = bodiless or (length is not None and length <= SMALL_BODY)
        if self.small:
            return  # written whole in response_done
        if self.gone:
            # A streamed body with no client to take it: stop reading it (the connection can't be
            # reused with a body half read). The exchange is still analysed.
            conn.flight = None
            self.upstream = None
            conn.close()
            self.finish()
            return
        # Streamed: the client gets chunked (HTTP/1.1) or a close-delimited body (HTTP/1.0) unless
        # the upstream declared a length.
        if length is None:
            if self.version == "1.1":
                self.chunked_out = True
            else:
                self.close_after = True
        self.write_head(conn)

    def write_head(self, conn: UpstreamConnection, *, interim: bool = False, body: bytes | None = None) -> None:
        reason = conn.reason.strip() or _phrase(conn.status)
        out = [b"HTTP/", self.version.encode(), b" ", str(conn.status).encode(), b" ", reason, b"\r\n"]
        named: set[bytes] = set()
        for name, value in conn.headers:
            if name.lower() == b"connection":
                named.update(t.strip().lower() for t in value.split(b",") if t.strip())
        has_date = False
        for name, value in conn.headers:
            lower = name.lower()
            if lower in _RESPONSE_DROP or lower in named:
                continue
            if interim is False and self.chunked_out and lower == b"content-length":
                continue
            if lower == b"date":
                has_date = True
            out += (name, b": ", value, b"\r\n")
        if not interim:
            if not has_date:
                out += (b"Date: ", _http_date(), b"\r\n")
            out += (b"X-Request-ID: ", self.rid.encode(), b"\r\n")
            if self.chunked_out:
                out.append(b"Transfer-Encoding: chunked\r\n")
            if not self.keep_alive or self.close_after or self.front.closing:
                self.close_after = True
                out.append(b"Connection: close\r\n")
            elif self.version == "1.0":
                out.append(b"Connection: keep-alive\r\n")
        out.append(b"\r\n")
        if body:
            out.append(body)
        if not interim:
            self.started = True
        if self.transport is not None and not self.gone:
            self.transport.write(b"".join(out))

    def response_body(self, data: bytes) -> None:
        self.response_size += len(data)
        room = self.front.cfg.inspect_bytes - len(self.response_prefix)
        if room > 0:
            self.response_prefix += data[:room]
        if self.small:
            self.small_body += data
            return
        if self.gone or self.transport is None:
            return
        if self.chunked_out:
            self.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.transport.write(data)

    def response_done(self, conn: UpstreamConnection, keep: bool) -> None:
        self.upstream = None
        if self.small:
            self.response_headers = conn.headers
            self.write_head(conn, body=bytes(self.small_body))
        else:
            self.response_headers = conn.headers
            if self.chunked_out and not self.gone and self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
        if keep:
            self.front.release(conn)
        else:
            conn.close()
        self.finish()

    def answer(self, status: int, title: str, detail: str, *, close: bool = False) -> None:
        """A sensor-made problem answer (RFC 9457) with the request id, as the aiohttp path makes it."""
        if not self.rid:
            self.rid = sane_request_id(None)
        self.send_own(problem_response(status, title, detail, self.rid, close=close))

    def send_own(self, resp: web.StreamResponse, *, close: bool = False) -> None:
        """Write an answer the sensor made (a problem document, the enforce gate's block) in one
        write, record it for the exchange and end the request. Closes the connection when asked, when
        the client or the answer says so (``force_close()``) or when the listener is stopping."""
        body = resp.body if isinstance(resp, web.Response) and isinstance(resp.body, bytes) else b""
        headers = [(name.encode("latin-1"), value.encode("utf-8", "surrogateescape"))
                   for name, value in resp.headers.items()
                   if name.lower() not in ("content-length", "x-request-id", "connection", "transfer-encoding")]
        headers += [(b"Content-Length", str(len(body)).encode()), (b"X-Request-ID", self.rid.encode())]
        close = close or not self.keep_alive or self.front.closing or resp.keep_alive is False
        self.status = resp.status
        self.response_headers = headers
        self.response_prefix = bytearray(body[: self.front.cfg.inspect_bytes])
        self.response_size = len(body)
        self.close_after = close
        out = [b"HTTP/", self.version.encode(), b" ", str(resp.status).encode(), b" ",
               resp.reason.encode("latin-1", "replace") if resp.reason else _phrase(resp.status), b"\r\n"]
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        out += (b"Date: ", _http_date(), b"\r\n")
        if close:
            out.append(b"Connection: close\r\n")
        elif self.version == "1.0":
            out.append(b"Connection: keep-alive\r\n")  # HTTP/1.0 closes unless told otherwise
        out += (b"\r\n", body)
        self.started = True
        if self.transport is not None and not self.gone:
            self.transport.write(b"".join(out))
        self.finish()

    # -- end of an exchange ----------------------------------------------------------------------
    def finish(self, *, submit: bool = True) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        if self.req is not None and submit:
            self.submit()
        close = self.close_after
        self.reset_request()
        self.busy = False
        transport = self.transport
        if transport is None or self.gone:
            return
        if close or self.closing or self.front.closing:
            transport.close()
            return
        self.arm_idle()
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        if self.buf:
            self.try_head()

    def submit(self) -> None:
        req = self.req
        assert req is not None
        try:
            exchange = self.exchange(req)
            self.state.sink.submit(exchange)
        except Exception as exc:
            self.state.counters.analysis_errors += 1
            log.warning("exchange_submit_failed", error=type(exc).__name__)
            return
        if self.state.debug:
            self.log_exchange(exchange)

    def log_exchange(self, exchange: Exchange) -> None:
        """The per-request debug line (the same as the aiohttp path's)."""
        log_request_proxied(log, exchange)

    def exchange(self, req: _Request) -> Exchange:
        url = req.url.decode("utf-8", "surrogateescape").partition("#")[0]
        raw_path, _, raw_query = url.partition("?")
        response_headers = _str_headers(self.response_headers) if self.response_headers else EMPTY_HEADERS
        inspect = self.front.cfg.inspect_bytes
        return Exchange(
            request_id=self.rid or sane_request_id(None),
            method=req.method,
            path=decode_path(raw_path),
            query_string=raw_query,
            request_headers=_str_headers(req.headers),
            peer_ip=self.peer,
            listener_scheme="http",
            http_version=self.version,
            request_body=self.request_body[:inspect],
            request_body_size=len(self.request_body),
            status=self.status,
            response_headers=response_headers,
            response_body=bytes(self.response_prefix),
            response_body_size=self.response_size,
            started_at=self.started_at,
            duration_ms=(time.perf_counter() - self.t0) * 1000.0,
            source="inline",
            peer_cert_subject=None,
            upstream_error=self.error,
            request_verdict=self.gate_exchange.request_verdict if self.gate_exchange is not None else None,
        )


def fast_path_eligible(cfg: Any, ssl_context: object) -> bool:
    """The fast path serves plain-TCP listeners with an http:// upstream (TLS goes through aiohttp)."""
    return bool(cfg.fast_path) and ssl_context is None and URL(cfg.upstream).scheme == "http"
