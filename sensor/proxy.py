"""The inline reverse proxy: forward first, look second.

Plain API requests on plain-TCP listeners are served by the protocol-level fast path
(``sensor/fastpath.py``), which hands every other connection to this aiohttp application before
anything goes upstream; TLS listeners use this path throughout.

One pooled upstream ``ClientSession`` per application. Bodies stream both ways in bounded chunks; the
first ``cfg.inspect_bytes`` of each direction are kept (tee) for the ``Exchange``, which is handed to
the sink only after the client has its answer. In detect mode nothing here ever waits on analysis.

aiohttp is a web framework first, so several of its defaults are wrong for a proxy (see DESIGN.md
section 4). Each is handled where it matters and named in a comment:

* the server and the client both decompress bodies by default -> ``auto_decompress=False`` on both;
* ``client_max_size`` does not bound a streamed body -> the body cap is enforced here;
* no body-read timeout and a ~1 h keep-alive -> per-chunk ``client_body_timeout``, cfg keep-alive;
* the parser accepts ``HTTP/2.0`` / ``HTTP/0.9`` request lines and absolute-form targets -> 505 and
  the upstream is chosen by configuration only;
* ``Transfer-Encoding: ,chunked`` is accepted -> client framing headers are never forwarded, the body
  is re-framed by the upstream client (Content-Length if the client sent one, chunked otherwise);
* ``StreamResponse`` invents ``Content-Type: application/octet-stream`` and ``Server`` -> removed again
  when the upstream did not send them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping
from yarl import URL

from apiward.logs import get_logger
from sensor.config import SensorConfig
from sensor.exchange import EMPTY_HEADERS, Exchange, ExchangeSink
from sensor.fastpath import fast_path_eligible
from sensor.fastpath_site import FastSite
from sensor.http_common import (
    ERRNO_NAMES,
    HEADER_TOTAL_FACTOR,
    MAX_HEADER_COUNT,
    PROXY_SET_REQUEST_HEADERS,
    REQUEST_ID_HEADER,
    SMALL_BODY,
    c_parser_in_use,
    decode_path,
    end_to_end_headers,
    frozen_headers,
    log_request_proxied,
    problem_response,
    sane_request_id,
    split_target,
)

log = get_logger("sensor.proxy")

# Bytes read or written per step in either direction. Big enough to keep per-chunk Python overhead
# small at ~1 GB/s, small enough that a few in flight per request keep memory flat.
CHUNK_SIZE = 256 * 1024
# aiohttp's client adds these on its own unless told not to; a proxy must forward only what the client
# sent (Accept-Encoding in particular: the client's value decides what encoding comes back).
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept-Encoding", "Accept", "Content-Type")


@dataclass(slots=True)
class ProxyCounters:
    """Monotonic counters, read by the metrics endpoint. Plain ints: one event loop, no locking."""

    requests: int = 0
    upstream_errors_502: int = 0
    upstream_timeouts_504: int = 0
    client_disconnects: int = 0
    analysis_errors: int = 0
    rejected_version: int = 0
    rejected_framing: int = 0  # transfer codings other than chunked (501)
    rejected_headers: int = 0  # header section over MAX_HEADER_COUNT fields or its byte total (431)
    body_too_large: int = 0
    client_body_timeouts: int = 0
    upstream_aborts: int = 0  # upstream failed after the response had started (client connection cut)
    blocked: int = 0  # answered by the request gate (enforce mode)
    enforce_over_budget: int = 0  # gate verdicts slower than the budget: passed (fail open)
    python_parser: int = 0  # 1 when aiohttp runs without its C parser (checked at start-up)
    circuit_open_502: int = 0  # answered 502 at once: the upstream circuit breaker is open
    circuit_opened: int = 0  # times the breaker opened (N consecutive connect failures)
    fast_path_handoffs: int = 0  # connections the fast path handed to the aiohttp path (sensor/fastpath.py)


@dataclass(slots=True)
class CircuitBreaker:
    """Fail fast while the upstream cannot be connected to.

    After ``threshold`` consecutive *connect* failures (refused, unreachable, connect timeout) the
    breaker opens: requests are answered 502 at once, without a connect attempt, for ``cooldown``
    seconds. Then one request is let through as a probe (the others still fail fast until it ends);
    a connect failure re-opens the breaker for another cool-down, any upstream answer closes it.
    Read timeouts and resets after connecting are not connect failures: a slow or flaky upstream is
    still reachable. ``threshold <= 0`` turns the breaker off.
    """

    threshold: int = 5
    cooldown: float = 5.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0  # consecutive connect failures
    open_until: float = 0.0
    probing: bool = False

    @property
    def is_open(self) -> bool:
        return 0 < self.threshold <= self.failures

    def allow(self) -> bool:
        """May a request try the upstream now? (When True, exactly one of the record methods follows.)"""
        if not self.is_open:
            return True
        if self.probing or self.clock() < self.open_until:
            return False
        self.probing = True
        return True

    def connected(self) -> None:
        self.failures = 0
        self.probing = False

    def connect_failed(self) -> bool:
        """Count a connect failure; True when this one opened (or re-opened) the breaker."""
        reopened = self.probing
        self.probing = False
        self.failures += 1
        if not self.is_open:
            return False
        self.open_until = self.clock() + self.cooldown
        return reopened or self.failures == self.threshold

    def inconclusive(self) -> None:
        """The attempt ended without saying anything about the upstream (the client's body failed)."""
        self.probing = False


# Enforce-mode hook. Called before anything is sent upstream with the request-side Exchange (status 0,
# body prefix = the first chunk read) and the aiohttp request, or None on the fast path
# (sensor/fastpath.py), which also runs the gate without a task when it never awaits. Returning a
# response blocks the request with it; returning None forwards. A gate that raises fails open
# (counted as an analysis error). Detect mode passes None.
RequestGate = Callable[[web.Request | None, Exchange], Awaitable[web.StreamResponse | None]]


@dataclass(slots=True)
class _ProxyState:
    cfg: SensorConfig
    sink: ExchangeSink
    counters: ProxyCounters
    upstream_origin: str  # "http://host:port", no trailing slash
    upstream_prefix: str  # raw path prefix of cfg.upstream without trailing slash ("" or "/api")
    request_gate: RequestGate | None
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    debug: bool = False  # per-request log lines (and the request-id binding they need) only then


UPSTREAM_SESSION_KEY = web.AppKey("apiward_upstream_session", aiohttp.ClientSession)
PROXY_STATE_KEY = web.AppKey("apiward_proxy_state", _ProxyState)


class _BodyAbort(Exception):
    """Raised inside the request-body iterator to stop the upload. Deliberately not an ``OSError``:
    aiohttp's client re-raises OSErrors from the body writer as-is (``TimeoutError`` is one), which
    would be mistaken for an upstream failure."""


class _RequestBody:
    """The client's request body as an async iterator of bounded chunks, with a tee of its prefix.

    Every read has its own timeout (aiohttp has none for bodies), the running size is checked against
    ``max_body_bytes`` *before* a chunk is yielded, so the upstream never receives more than the cap.
    """

    __slots__ = ("_content", "_first", "_inspect", "_max", "_timeout", "failure", "prefix", "size")

    def __init__(self, content: aiohttp.StreamReader, cfg: SensorConfig) -> None:
        self._content = content
        self._inspect = cfg.inspect_bytes
        self._max = cfg.max_body_bytes
        self._timeout = cfg.client_body_timeout
        self._first: bytes = b""
        self.prefix = bytearray()
        self.size = 0
        self.failure: str | None = None  # "client_body_timeout" | "body_too_large" | "client_disconnect"

    async def _read(self) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                chunk = await self._content.read(CHUNK_SIZE)
        except TimeoutError:
            self.failure = "client_body_timeout"
            raise _BodyAbort(self.failure) from None
        except (web.RequestPayloadError, ConnectionError, aiohttp.ClientError) as exc:
            # The client went away mid-body or sent a malformed chunked body.
            self.failure = "client_disconnect"
            raise _BodyAbort(self.failure) from exc
        if chunk:
            self.size += len(chunk)
            if self._max is not None and self.size > self._max:
                self.failure = "body_too_large"
                raise _BodyAbort(self.failure)
            room = self._inspect - len(self.prefix)
            if room > 0:
                self.prefix += chunk[:room]
        return chunk

    async def read_first(self) -> None:
        """Read the first chunk before anything goes upstream, so that a silent client gets a 408
        (nothing forwarded yet) and an enforce-mode gate sees the start of the body."""
        self._first = await self._read()

    async def read_all(self) -> bytes:
        """The whole body, for small declared lengths (``SMALL_BODY``); same caps and timeouts."""
        parts = [self._first] if self._first else []
        self._first = b""
        while chunk := await self._read():
            parts.append(chunk)
        return b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._first:
            first, self._first = self._first, b""
            yield first
        while chunk := await self._read():
            yield chunk


@dataclass(slots=True)
class _Capture:
    """What is known of one exchange while it is in flight (becomes an ``Exchange`` at the end)."""

    request_id: str
    started_at: float
    t0: float
    status: int = 0
    response_headers: MultiMapping[str] = field(default_factory=lambda: EMPTY_HEADERS)
    response_prefix: bytes = b""
    response_size: int = 0
    upstream_error: str | None = None
    response_started: bool = False  # status line and headers handed to the client


# ---------------------------------------------------------------------------------------------------
# application


def build_proxy_app(
    cfg: SensorConfig,
    sink: ExchangeSink,
    counters: ProxyCounters | None = None,
    *,
    request_gate: RequestGate | None = None,
    breaker: CircuitBreaker | None = None,
) -> web.Application:
    """The proxy as an aiohttp application: one catch-all route, one pooled upstream session."""
    if not cfg.upstream:
        raise ValueError("the inline proxy needs cfg.upstream")
    base = URL(cfg.upstream)
    if base.scheme not in ("http", "https") or not base.host:
        raise ValueError(f"upstream must be an absolute http(s) URL, not {cfg.upstream!r}")
    state = _ProxyState(
        cfg=cfg,
        sink=sink,
        counters=counters if counters is not None else ProxyCounters(),
        upstream_origin=str(base.origin()).rstrip("/"),
        upstream_prefix=base.raw_path.rstrip("/"),
        request_gate=request_gate,
        breaker=breaker if breaker is not None else CircuitBreaker(),
        debug=cfg.log_level == "debug",
    )
    # client_max_size only applies to request.read()/post(), which the proxy never calls; it is set
    # low so that an accidental full read fails loudly instead of buffering a large body.
    app = web.Application(client_max_size=1024 * 1024)
    app[PROXY_STATE_KEY] = state
    app.cleanup_ctx.append(_upstream_session_ctx)
    app.router.add_route("*", "/{tail:.*}", _handle, expect_handler=_expect_handler)
    return app


async def _upstream_session_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[PROXY_STATE_KEY].cfg
    connector = aiohttp.TCPConnector(
        limit=cfg.pool_size,
        limit_per_host=0,  # one upstream: the global limit is the per-host limit
        keepalive_timeout=cfg.upstream_keepalive_timeout,
        force_close=False,  # keep-alive on: connections are reused across client requests
        ttl_dns_cache=10,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=cfg.connect_timeout, sock_read=cfg.read_timeout),
        auto_decompress=False,  # forward the upstream's bytes exactly as encoded
        cookie_jar=aiohttp.DummyCookieJar(),  # never mix one client's cookies into another's request
        skip_auto_headers=_SKIP_AUTO_HEADERS,
        trust_env=False,  # HTTP(S)_PROXY in the environment must not reroute traffic
        max_line_size=cfg.max_header_bytes,
        max_field_size=cfg.max_header_bytes,
        read_bufsize=CHUNK_SIZE,
    )
    app[UPSTREAM_SESSION_KEY] = session
    try:
        yield
    finally:
        await session.close()


def build_server_ssl_context(cert: str, key: str | None = None, client_ca: str | None = None) -> ssl.SSLContext:
    """A TLS server context; with ``client_ca`` a client certificate is verified *when presented*
    (CERT_OPTIONAL): mTLS is evidence for analysis, not an access control of the sensor."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


async def start_proxy(
    cfg: SensorConfig,
    sink: ExchangeSink,
    host: str,
    port: int,
    counters: ProxyCounters | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    request_gate: RequestGate | None = None,
    breaker: CircuitBreaker | None = None,
    sock: socket.socket | None = None,
) -> web.AppRunner:
    """Start the proxy on ``host:port``, or on an already listening ``sock`` (the proxy process of
    ``--analysis-process``); the caller owns the runner (``await runner.cleanup()``).

    TLS: ``ssl_context`` wins; otherwise ``cfg.tls_cert`` (+ ``tls_key``, ``tls_client_ca``) is used.
    """
    counters = counters if counters is not None else ProxyCounters()
    if not c_parser_in_use():
        counters.python_parser = 1
        log.warning("http_parser_not_c", detail="aiohttp runs its pure-Python parser; install the wheels")
    if ssl_context is None and cfg.tls_cert:
        ssl_context = build_server_ssl_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
    app = build_proxy_app(cfg, sink, counters, request_gate=request_gate, breaker=breaker)
    runner = web.AppRunner(
        app,
        auto_decompress=False,  # request bodies pass as sent (compressed)
        keepalive_timeout=cfg.keepalive_timeout,  # aiohttp's default is 3630 s
        max_line_size=cfg.max_header_bytes,
        max_field_size=cfg.max_header_bytes,
        access_log=None,  # one debug line per request from the handler instead
        handler_cancellation=False,  # a gone client must not cancel mid-way: we count and clean up
    )
    await runner.setup()
    site: web.BaseSite
    if fast_path_eligible(cfg, ssl_context):
        if sock is not None:
            host, port = sock.getsockname()[:2]
        site = FastSite(runner, app[PROXY_STATE_KEY], host, port, sock)
    elif sock is not None:
        site = web.SockSite(runner, sock, ssl_context=ssl_context)
        host, port = sock.getsockname()[:2]
    else:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("proxy_started", listen=f"{host}:{port}", upstream=cfg.upstream, tls=ssl_context is not None,
             fast_path=isinstance(site, FastSite))
    return runner


# ---------------------------------------------------------------------------------------------------
# request path


async def _expect_handler(request: web.Request) -> None:
    """``Expect: 100-continue``: only invite the body when it will be accepted. aiohttp's default
    handler answers 100 before the handler can say 413/505, so the client would upload for nothing.
    Otherwise this does what the default does (the sensor answers the expectation itself and does
    not forward ``Expect``)."""
    if request.version != HttpVersion11:
        return
    limit = request.app[PROXY_STATE_KEY].cfg.max_body_bytes
    if limit is not None and request.content_length is not None and request.content_length > limit:
        return
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the interim response is not part of the answer's size


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[PROXY_STATE_KEY]
    state.counters.requests += 1
    cap = _Capture(
        request_id=sane_request_id(request.headers.get(REQUEST_ID_HEADER)),
        started_at=time.time(),
        t0=time.perf_counter(),
    )
    body = _RequestBody(request.content, state.cfg)
    if not state.debug:  # binding contextvars costs more than a small request's analysis
        try:
            return await _proxy(request, state, cap, body)
        finally:
            _submit(request, state, cap, body)
    with structlog.contextvars.bound_contextvars(request_id=cap.request_id):
        try:
            return await _proxy(request, state, cap, body)
        finally:
            _submit(request, state, cap, body)


async def _proxy(request: web.Request, state: _ProxyState, cap: _Capture, body: _RequestBody) -> web.StreamResponse:
    cfg, counters = state.cfg, state.counters
    rid = cap.request_id

    if request.version not in (HttpVersion10, HttpVersion11):
        counters.rejected_version += 1
        cap.upstream_error = "http_version_not_supported"
        return await _answer_505(request, cap)

    raw_headers = request.raw_headers
    header_bytes = len(request.raw_path) + sum(len(name) + len(value) + 4 for name, value in raw_headers)
    header_limit = HEADER_TOTAL_FACTOR * cfg.max_header_bytes
    if len(raw_headers) > MAX_HEADER_COUNT or header_bytes > header_limit:
        counters.rejected_headers += 1
        cap.upstream_error = "header_too_large"
        detail = f"at most {MAX_HEADER_COUNT} header fields and {header_limit} bytes of request target and headers"
        resp = problem_response(431, "Request Header Fields Too Large", detail, rid, close=True)
        answered = await _answer(request, cap, resp)
        _cut(request)  # the body (if any) is not worth reading
        return answered

    codings = [c.strip().lower() for te in request.headers.getall("Transfer-Encoding", ()) for c in te.split(",")]
    if [c for c in codings if c] not in ([], ["chunked"]):
        # "gzip, chunked" is accepted by the parser, which undoes only the chunking: forwarding it
        # as plain chunked would silently drop a transfer-coding. RFC 9112 6.1: answer 501.
        counters.rejected_framing += 1
        cap.upstream_error = "unsupported_transfer_coding"
        detail = "only the chunked transfer coding is supported"
        answered = await _answer(request, cap, problem_response(501, "Not Implemented", detail, rid, close=True))
        _cut(request)
        return answered

    limit = cfg.max_body_bytes
    if limit is not None and request.content_length is not None and request.content_length > limit:
        counters.body_too_large += 1
        cap.upstream_error = "body_too_large"
        answered = await _answer(request, cap, _problem_413(rid, limit))
        if "Expect" in request.headers:
            # The client waits for 100 Continue and sends no body: close instead of lingering.
            # Without Expect the body is on its way; aiohttp then reads and drops it for a while
            # (lingering close) so that the client gets to see the 413 rather than a reset.
            _cut(request)
        return answered

    # A body exists when the client framed one: Content-Length > 0 or chunked (aiohttp hands an
    # EmptyStreamReader otherwise).
    has_body = request.body_exists
    if has_body:
        try:
            await body.read_first()
        except _BodyAbort:
            return await _body_failure_answer(request, state, cap, body)

    if state.request_gate is not None:
        try:
            blocked = await state.request_gate(request, _exchange(request, cap, body))
        except Exception as exc:
            # Fail open: a broken verdict must not take the API down. Logged by type only: an exception
            # message can quote request data.
            counters.analysis_errors += 1
            log.warning("request_gate_failed", error=type(exc).__name__)
            blocked = None
        if blocked is not None:
            counters.blocked += 1
            cap.upstream_error = "blocked"
            blocked.headers[REQUEST_ID_HEADER] = rid
            return await _answer(request, cap, blocked)

    raw_path, raw_query = split_target(request.raw_path)
    target = state.upstream_origin + state.upstream_prefix + raw_path + (f"?{raw_query}" if raw_query else "")
    # encoded=True: the path and query go upstream byte for byte as the client sent them.
    url = URL(target, encoded=True)
    headers = _upstream_request_headers(request, rid)
    if has_body and not request.headers.get("Transfer-Encoding") and request.content_length is not None:
        # Re-frame with the parsed length; aiohttp then writes exactly this many bytes, no chunking.
        headers["Content-Length"] = str(request.content_length)
    elif not has_body and request.content_length == 0:
        headers["Content-Length"] = "0"

    session = request.app[UPSTREAM_SESSION_KEY]
    data: bytes | AsyncIterator[bytes] | None = None
    if has_body:
        small = request.content_length is not None and request.content_length <= SMALL_BODY
        if small and "Transfer-Encoding" not in request.headers:
            try:
                data = await body.read_all()
            except _BodyAbort:
                return await _body_failure_answer(request, state, cap, body)
        else:
            data = body.chunks()
    breaker = state.breaker
    probe = breaker.is_open
    if not breaker.allow():
        counters.circuit_open_502 += 1
        cap.upstream_error = "circuit_open"
        detail = "upstream unreachable; failing fast while the circuit breaker is open"
        answered = await _answer(request, cap, problem_response(502, "Bad Gateway", detail, rid, close=True))
        if data is not None and not isinstance(data, bytes):
            _cut(request)  # a streamed body was not read: nothing of it goes anywhere
        return answered
    try:
        async with session.request(
            request.method,
            url,
            headers=headers,
            data=data,
            allow_redirects=False,  # redirects are the client's business
        ) as upstream:
            breaker.connected()
            return await _relay_response(request, state, cap, upstream)
    except (_BodyAbort, aiohttp.ClientError, TimeoutError) as exc:
        connect_error = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
        if connect_error and breaker.connect_failed():
            counters.circuit_opened += 1
            log.warning("upstream_circuit_open", failures=breaker.failures, cooldown_s=breaker.cooldown)
        if cap.response_started:
            # Too late for a status code: never append a clean end to a started response.
            log.warning("upstream_failed_after_response_start", error=type(exc).__name__)
            _cut(request)
            return web.Response(status=502)  # not sent: the connection is closed
        if body.failure is not None:
            # The upload was stopped by us (timeout, cap, client gone); aiohttp reports that as a
            # connection error on the upstream side.
            return await _body_failure_answer(request, state, cap, body)
        return await _upstream_failure_answer(request, state, cap, exc)
    finally:
        if probe and breaker.probing:
            breaker.inconclusive()  # the probe ended without a verdict: let the next one try


def _upstream_request_headers(request: web.Request, rid: str) -> CIMultiDict[str]:
    headers = end_to_end_headers(request.headers, drop=PROXY_SET_REQUEST_HEADERS)
    peer = request.remote
    if peer:
        prior = ", ".join(v.strip() for v in request.headers.getall("X-Forwarded-For", ()) if v.strip())
        headers.popall("X-Forwarded-For", None)
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme  # the listener's scheme (socket-based, not the URL)
    client_host = request.headers.get("Host")  # not request.host: an absolute-form target overrides it
    if client_host:
        headers["X-Forwarded-Host"] = client_host
    headers[REQUEST_ID_HEADER] = rid
    return headers


class _PassThroughResponse(web.StreamResponse):
    """A StreamResponse that does not add ``Content-Type`` / ``Server`` the upstream did not send:
    aiohttp sets ``application/octet-stream`` on any bodied response, which changes how browsers
    treat a response the API deliberately sent without a type."""

    async def _prepare_headers(self) -> None:
        had_type = "Content-Type" in self.headers
        had_server = "Server" in self.headers
        await super()._prepare_headers()
        if not had_type:
            self.headers.popall("Content-Type", None)
        if not had_server:
            self.headers.popall("Server", None)


async def _relay_response(
    request: web.Request, state: _ProxyState, cap: _Capture, upstream: aiohttp.ClientResponse
) -> web.StreamResponse:
    inspect = state.cfg.inspect_bytes
    headers = end_to_end_headers(upstream.headers)
    if "chunked" in upstream.headers.get("Transfer-Encoding", "").lower():
        # The upstream's chunking is undone by the client parser; a stray Content-Length next to it
        # would now describe the wrong framing.
        headers.popall("Content-Length", None)
    headers[REQUEST_ID_HEADER] = cap.request_id
    cap.status = upstream.status
    cap.response_headers = CIMultiDictProxy(CIMultiDict(upstream.headers))
    length = upstream.content_length
    if (
        length is not None
        and length <= SMALL_BODY
        and request.method != "HEAD"
        and upstream.status >= 200
        and upstream.status not in (204, 304)
        and "Transfer-Encoding" not in upstream.headers
    ):
        return await _relay_small_response(request, state, cap, upstream, headers)
    out = _PassThroughResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    prefix = bytearray()
    cap.response_started = True
    try:
        await out.prepare(request)
    except ConnectionError:
        return _client_gone(state, cap, upstream, out)
    while True:
        try:
            chunk = await upstream.content.read(CHUNK_SIZE)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Headers are already out: the only honest signal left is cutting the connection, so the
            # client sees a truncated body (no final chunk / short Content-Length), never a clean end.
            state.counters.upstream_aborts += 1
            cap.upstream_error = "upstream_timeout" if isinstance(exc, TimeoutError) else "upstream_aborted"
            log.debug("upstream_aborted_mid_response", error=type(exc).__name__)
            upstream.close()
            _cut(request)
            break
        if not chunk:
            try:
                await out.write_eof()
            except ConnectionError:
                return _client_gone(state, cap, upstream, out)
            break
        cap.response_size += len(chunk)
        room = inspect - len(prefix)
        if room > 0:
            prefix += chunk[:room]
        try:
            # A client that stops reading would otherwise hold this request and its upstream
            # connection forever (write() waits for the socket to drain, without a timeout).
            async with asyncio.timeout(state.cfg.client_body_timeout):
                await out.write(chunk)
        except (ConnectionError, TimeoutError):
            cap.response_prefix = bytes(prefix)
            _cut(request)
            return _client_gone(state, cap, upstream, out)
    cap.response_prefix = bytes(prefix)
    return out


class _PassThroughSmallResponse(web.Response):
    """The one-write form of ``_PassThroughResponse`` for bodies read whole (same header rules)."""

    async def _prepare_headers(self) -> None:
        had_type = "Content-Type" in self.headers
        had_server = "Server" in self.headers
        await super()._prepare_headers()
        if not had_type:
            self.headers.popall("Content-Type", None)
        if not had_server:
            self.headers.popall("Server", None)


async def _relay_small_response(
    request: web.Request,
    state: _ProxyState,
    cap: _Capture,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
) -> web.StreamResponse:
    """Read a small, length-framed upstream body whole, then send status, headers and body in one
    write. Nothing has reached the client while the body is read, so an upstream failure here still
    becomes a clean 502/504 (the caller handles the exception)."""
    data = await upstream.read()
    cap.response_size = len(data)
    cap.response_prefix = data[: state.cfg.inspect_bytes]
    out = _PassThroughSmallResponse(status=upstream.status, reason=upstream.reason, headers=headers, body=data)
    cap.response_started = True
    try:
        async with asyncio.timeout(state.cfg.client_body_timeout):
            await out.prepare(request)
            await out.write_eof()
    except (ConnectionError, TimeoutError):
        _cut(request)
        return _client_gone(state, cap, upstream, out)
    return out


def _client_gone(
    state: _ProxyState, cap: _Capture, upstream: aiohttp.ClientResponse, out: web.StreamResponse
) -> web.StreamResponse:
    state.counters.client_disconnects += 1
    cap.upstream_error = cap.upstream_error or "client_disconnect"
    log.debug("client_disconnected")
    # close(), not release(): the rest of the upstream body is unread, the connection can't be reused.
    upstream.close()
    return out


def _cut(request: web.Request) -> None:
    """Close the client connection now: flush what was written, skip aiohttp's lingering read of an
    unread request body (up to 10 s), and never write a clean end of a truncated response."""
    request.protocol.force_close()


async def _answer(request: web.Request, cap: _Capture, resp: web.StreamResponse) -> web.StreamResponse:
    """Send a sensor-made answer now (so the Exchange is submitted after the client has it)."""
    cap.status = resp.status
    try:
        await resp.prepare(request)
        await resp.write_eof()
    except ConnectionError:
        pass
    cap.response_headers = CIMultiDictProxy(CIMultiDict(resp.headers))
    if isinstance(resp, web.Response) and resp.body is not None and isinstance(resp.body, bytes):
        cap.response_prefix = resp.body
        cap.response_size = len(resp.body)
    return resp


async def _answer_505(request: web.Request, cap: _Capture) -> web.StreamResponse:
    """505 for HTTP/0.9, HTTP/2.0 ... request lines. Written by hand: aiohttp echoes the request's
    version in the status line ("HTTP/2.0 505"), which is not HTTP/1.1 any client can parse."""
    resp = problem_response(
        505,
        "HTTP Version Not Supported",
        f"HTTP/{request.version.major}.{request.version.minor} is not accepted; use HTTP/1.1",
        cap.request_id,
        close=True,
    )
    body = resp.body if isinstance(resp.body, bytes) else b""
    head = (
        "HTTP/1.1 505 HTTP Version Not Supported\r\n"
        f"Content-Type: {resp.content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{REQUEST_ID_HEADER}: {cap.request_id}\r\n"
        "Connection: close\r\n\r\n"
    )
    cap.status = 505
    cap.response_headers = CIMultiDictProxy(CIMultiDict(resp.headers))
    cap.response_prefix = body
    cap.response_size = len(body)
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.write(head.encode("ascii") + body)
    _cut(request)
    # aiohttp will try to send this one and meet the closed transport (ConnectionError, handled
    # quietly by aiohttp); it only exists because a handler must return a response.
    return resp


def _problem_413(rid: str, limit: int) -> web.Response:
    return problem_response(413, "Content Too Large", f"request body exceeds {limit} bytes", rid, close=True)


async def _body_failure_answer(
    request: web.Request, state: _ProxyState, cap: _Capture, body: _RequestBody
) -> web.StreamResponse:
    failure = body.failure or "client_disconnect"
    cap.upstream_error = failure
    if failure == "body_too_large":
        state.counters.body_too_large += 1
        assert state.cfg.max_body_bytes is not None
        return await _answer(request, cap, _problem_413(cap.request_id, state.cfg.max_body_bytes))
    if failure == "client_body_timeout":
        state.counters.client_body_timeouts += 1
        resp = problem_response(
            408,
            "Request Timeout",
            f"no request body data for {state.cfg.client_body_timeout:g} s",
            cap.request_id,
            close=True,
        )
        # The client is silent: no point in lingering to read the rest of its body.
        answered = await _answer(request, cap, resp)
        _cut(request)
        return answered
    state.counters.client_disconnects += 1
    _cut(request)
    return web.Response(status=400)  # never reaches the wire: the transport is closed


async def _upstream_failure_answer(
    request: web.Request, state: _ProxyState, cap: _Capture, exc: BaseException
) -> web.StreamResponse:
    if isinstance(exc, TimeoutError):  # aiohttp's ConnectionTimeoutError / SocketTimeoutError too
        state.counters.upstream_timeouts_504 += 1
        kind = "connect_timeout" if isinstance(exc, aiohttp.ConnectionTimeoutError) else "read_timeout"
        cap.upstream_error = kind
        detail = "the upstream did not answer in time" if kind == "read_timeout" else "connecting timed out"
        log.info("upstream_timeout", kind=kind, upstream=state.cfg.upstream)
        return await _answer(request, cap, problem_response(504, "Gateway Timeout", detail, cap.request_id))
    state.counters.upstream_errors_502 += 1
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        kind = "dns"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = ERRNO_NAMES.get(exc.os_error.errno or 0, "connect_error")
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        kind = "disconnected"
    elif isinstance(exc, aiohttp.ClientOSError):
        kind = "reset"
    elif isinstance(exc, aiohttp.ClientResponseError):
        kind = "bad_response"
    else:
        kind = "upstream_error"
    cap.upstream_error = kind
    log.info("upstream_error", kind=kind, error=type(exc).__name__, upstream=state.cfg.upstream)
    resp = problem_response(502, "Bad Gateway", f"upstream error: {kind}", cap.request_id)
    return await _answer(request, cap, resp)


# ---------------------------------------------------------------------------------------------------
# exchange


def _peer_cert_subject(request: web.Request) -> str | None:
    transport = request.transport
    if transport is None or transport.get_extra_info("sslcontext") is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    return format_cert_subject(cert.get("subject", ()))


_RDN_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


def format_cert_subject(subject: Any) -> str:
    """``ssl.getpeercert()['subject']`` as ``CN=client,O=Org`` (RFC 4514 order: most specific first)."""
    parts: list[str] = []
    for rdn in subject:
        for name, value in rdn:
            parts.append(f"{_RDN_SHORT.get(name, name)}={value}")
    return ",".join(reversed(parts))


def _exchange(request: web.Request, cap: _Capture, body: _RequestBody) -> Exchange:
    raw_path, raw_query = split_target(request.raw_path)
    return Exchange(
        request_id=cap.request_id,
        method=request.method,
        path=decode_path(raw_path),
        query_string=raw_query,
        request_headers=frozen_headers(request.headers),
        peer_ip=request.remote or "",
        listener_scheme=request.scheme,
        http_version=f"{request.version.major}.{request.version.minor}",
        request_body=bytes(body.prefix),
        request_body_size=body.size,
        status=cap.status,
        response_headers=cap.response_headers,
        response_body=cap.response_prefix,
        response_body_size=cap.response_size,
        started_at=cap.started_at,
        duration_ms=(time.perf_counter() - cap.t0) * 1000.0,
        source="inline",
        peer_cert_subject=_peer_cert_subject(request),
        upstream_error=cap.upstream_error,
    )


def _submit(request: web.Request, state: _ProxyState, cap: _Capture, body: _RequestBody) -> None:
    """Hand the finished exchange to analysis. Runs after the answer was written; never raises."""
    try:
        exchange = _exchange(request, cap, body)
        state.sink.submit(exchange)
    except Exception as exc:
        state.counters.analysis_errors += 1
        # The type only: an exception message can quote request data, which must not reach the logs.
        log.warning("exchange_submit_failed", error=type(exc).__name__)
        return
    if state.debug:  # even a filtered structlog call costs a proxy bind per request
        log_request_proxied(log, exchange)
