"""One pooled connection from the proxy's fast path to the upstream (``sensor/fastpath.py``).

It writes a request the fast path framed, parses the answer with llhttp (``httptools``) and reports
it to its *flight* -- the client connection it serves -- as head, body pieces and end, or as a failure
(``bad_response``, ``read_timeout``, ``reset``/``disconnected``, or a keep-alive race when a reused
connection closed before answering). Whether it may be reused is decided from the response head
(llhttp resets its own flags once a message completes). The pool it belongs to owns the counting and
the idle list; see ``FastFront``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Protocol, cast

import httptools


class Pool(Protocol):
    """What a connection needs of its pool (``sensor.fastpath.FastFront``)."""

    cfg: Any
    loop: asyncio.AbstractEventLoop
    head_limit: int

    def slot_freed(self) -> None: ...

    def forget(self, conn: UpstreamConnection) -> None: ...


class Flight(Protocol):
    """What a connection reports to (``sensor.fastpath._Client``)."""

    client_paused: bool

    def response_head(self, conn: UpstreamConnection) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_done(self, conn: UpstreamConnection, keep: bool) -> None: ...

    def upstream_failed(self, kind: str, conn: UpstreamConnection | None) -> None: ...

    def upstream_raced(self, conn: UpstreamConnection) -> None: ...


class HeadTooLarge(Exception):
    """Raised from a parser callback: llhttp then stops with a callback error."""


class UpstreamConnection(asyncio.Protocol):
    """One connection to the upstream; serves one flight (request/response) at a time."""

    def __init__(self, front: Pool) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.flight: Flight | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.received = 0
        self.last_read = 0.0
        self.read_timer: asyncio.TimerHandle | None = None
        # the response in progress
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.keep_alive = False
        self.close_delimited = False  # a body that ends when the upstream closes
        self.complete = False

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def idle_check(self) -> None:
        self.idle_timer = None
        if self.closed or self.flight is not None:
            return
        remaining = self.idle_since + self.front.cfg.upstream_keepalive_timeout - self.front.loop.time()
        if remaining > 0:
            self.idle_timer = self.front.loop.call_later(remaining, self.idle_check)
            return
        self.front.forget(self)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.front.slot_freed()
        if self.transport is not None:
            self.transport.close()
        for timer in (self.idle_timer, self.read_timer):
            if timer is not None:
                timer.cancel()
        self.idle_timer = self.read_timer = None

    def start(self, flight: Flight, data: bytes) -> None:
        self.flight = flight
        self.status = 0
        self.reason = b""
        self.headers = []
        self.head_bytes = 0
        self.close_delimited = False
        self.complete = False
        self.received = 0
        self.parser = httptools.HttpResponseParser(self)
        self.last_read = self.front.loop.time()
        if self.read_timer is None:
            self.read_timer = self.front.loop.call_later(self.front.cfg.read_timeout, self.read_check)
        assert self.transport is not None
        self.transport.write(data)

    def read_check(self) -> None:
        self.read_timer = None
        if self.closed or self.flight is None:
            return
        if self.flight.client_paused:  # the client is not reading: that timeout is the client's
            self.read_timer = self.front.loop.call_later(self.front.cfg.read_timeout, self.read_check)
            return
        remaining = self.last_read + self.front.cfg.read_timeout - self.front.loop.time()
        if remaining > 0:
            self.read_timer = self.front.loop.call_later(remaining, self.read_check)
            return
        flight, self.flight = self.flight, None
        self.close()
        flight.upstream_failed("read_timeout", self)

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        flight = self.flight
        if flight is None:  # bytes nobody asked for: the connection is not reusable
            self.front.forget(self)
            self.close()
            return
        self.received += len(data)
        self.last_read = self.front.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.flight = None
            self.close()
            flight.upstream_failed("bad_response", self)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.front.slot_freed()
        for timer in (self.idle_timer, self.read_timer):
            if timer is not None:
                timer.cancel()
        self.idle_timer = self.read_timer = None
        self.front.forget(self)
        flight, self.flight = self.flight, None
        if flight is None:
            return
        if self.close_delimited and self.status >= 200:
            # A body without a length ends with the connection (httptools has no "finish" call to
            # tell llhttp so): the response is complete.
            self.complete = True
            flight.response_done(self, False)
            return
        if self.status == 0 and self.received == 0 and self.reused:
            flight.upstream_raced(self)
        else:
            flight.upstream_failed("reset" if isinstance(exc, ConnectionResetError) else "disconnected", self)

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        # The aiohttp client's bounds (cfg.max_header_bytes per field, the total as on the request
        # side): an over-long upstream head is a bad response, not something to hand a client.
        self.head_bytes += len(name) + len(value) + 4
        if len(name) + len(value) + 2 > self.front.cfg.max_header_bytes or self.head_bytes > self.front.head_limit:
            raise HeadTooLarge
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # Reusable afterwards? Decided now: llhttp resets its flags when the message completes.
        tokens = {t.strip().lower() for name, value in self.headers if name.lower() == b"connection"
                  for t in value.split(b",")}
        framed = self.status in (204, 304) or any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers)
        version = self.parser.get_http_version()
        self.keep_alive = framed and (b"close" not in tokens if version == "1.1" else b"keep-alive" in tokens)
        self.close_delimited = not framed and self.status >= 200
        if self.flight is not None:
            self.flight.response_head(self)

    def on_body(self, body: bytes) -> None:
        if self.flight is not None:
            self.flight.response_body(body)

    def on_message_complete(self) -> None:
        if self.status < 200:  # an interim 1xx: the final response follows (the parser goes on)
            self.headers = []
            self.head_bytes = 0
            self.reason = b""
            self.status = 0
            return
        self.complete = True
        flight, self.flight = self.flight, None
        keep = self.keep_alive
        # read_timer stays: it lapses by itself when it finds no flight, and the next flight reuses it
        if flight is not None:
            flight.response_done(self, keep)
