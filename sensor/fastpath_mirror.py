"""The mirror listener's fast path: plain mirrored requests parsed at the protocol level.

A mirrored request needs no upstream: once its head and (small, length-framed) body are read, the
sender gets ``204`` with the request id at once, then the exchange goes to analysis. This is the
inline fast path's connection handling (``sensor/fastpath.py``: llhttp parsing, timers, keep-alive,
pipelining, hand-over of anything unusual to aiohttp before a byte is answered) with the upstream
step replaced by that answer. Exchange records (``POST /apiward/v1/exchanges``), bodies over 64 KiB,
chunked bodies and every other unusual request go to the aiohttp mirror app (``sensor/mirror.py``),
which builds the same ``Exchange`` for the same request.
"""

from __future__ import annotations

import time

from multidict import CIMultiDict, CIMultiDictProxy

from apiward.logs import get_logger
from sensor.exchange import Exchange
from sensor.fastpath import _Client, _http_date, _Request
from sensor.http_common import decode_path, sane_request_id, split_target

log = get_logger("sensor.mirror")

RECORDS_PATH = "/apiward/v1/exchanges"  # exchange records (sensor.mirror serves them)
_RECORDS_TARGET = RECORDS_PATH.encode()


class MirrorClient(_Client):
    """One connection of the mirror listener on the fast path."""

    def parse_head(self, head: bytes) -> _Request | None:
        req = super().parse_head(head)
        if req is not None and req.url.startswith(_RECORDS_TARGET):
            return None  # exchange records: validated by the aiohttp app
        return req

    def keep_unfinished(self) -> bool:
        # The sender left mid-body: as on the aiohttp path, what arrived is still analysed.
        self.request_body = bytes(self.buf[self.head_len :])
        self.buf.clear()
        return True

    def send_upstream(self) -> None:
        """The whole request is here: answer 204 now (the sender never waits on analysis)."""
        req = self.req
        assert req is not None
        rid_in = next((value for name, value in req.headers if name.lower() == b"x-request-id"), None)
        self.rid = sane_request_id(rid_in.decode("latin-1") if rid_in is not None else None)
        if len(self.request_body) > self.front.cfg.inspect_bytes:
            self.state.counters.truncated_bodies += 1
        close = not self.keep_alive or self.closing or self.front.closing
        self.close_after = close
        if close:
            connection = b"Connection: close\r\n"
        elif self.version == "1.0":
            connection = b"Connection: keep-alive\r\n"  # HTTP/1.0 closes unless told otherwise
        else:
            connection = b""
        self.started = True
        if self.transport is not None and not self.gone:
            self.transport.write(b"".join((
                b"HTTP/", self.version.encode(), b" 204 No Content\r\nX-Request-ID: ", self.rid.encode(),
                b"\r\nDate: ", _http_date(), b"\r\n", connection, b"\r\n",
            )))  # fmt: skip
        self.finish()

    def log_exchange(self, exchange: Exchange) -> None:
        log_request_mirrored(exchange)

    def exchange(self, req: _Request) -> Exchange:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in req.headers:
            headers.add(name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
        return mirrored_exchange(
            rid=self.rid or sane_request_id(None), method=req.method,
            target=req.url.decode("utf-8", "surrogateescape"), headers=headers, peer=self.peer,
            listener_scheme="http", http_version=self.version,
            body=self.request_body[: self.front.cfg.inspect_bytes], size=len(self.request_body),
            started_at=self.started_at, duration_ms=(time.perf_counter() - self.t0) * 1000.0, error=self.error,
        )  # fmt: skip


def mirrored_exchange(
    *, rid: str, method: str, target: str, headers: CIMultiDict[str], peer: str, listener_scheme: str,
    http_version: str, body: bytes, size: int, started_at: float, duration_ms: float, error: str | None,
) -> Exchange:  # fmt: skip
    """The exchange of one mirrored request (both paths build it here): the original target from
    nginx's ``X-Original-URI`` when present, Envoy's ``-shadow`` host suffix removed, the scheme the
    gateway's ``X-Forwarded-Proto`` names (the sender is the gateway), no response (status 0)."""
    raw_path, raw_query = split_target(headers.get("X-Original-URI") or target)
    host = headers.get("Host")
    if host:
        fixed = strip_shadow_suffix(host)
        if fixed != host:
            headers["Host"] = fixed
    forwarded_proto = headers.get("X-Forwarded-Proto", "").strip().lower()
    return Exchange(
        request_id=rid,
        method=method,
        path=decode_path(raw_path),
        query_string=raw_query,
        request_headers=CIMultiDictProxy(headers),
        peer_ip=peer,
        listener_scheme=forwarded_proto if forwarded_proto in ("http", "https") else listener_scheme,
        http_version=http_version,
        request_body=body,
        request_body_size=size,
        status=0,
        started_at=started_at,
        duration_ms=duration_ms,
        source="mirror",
        upstream_error=error,
    )


def log_request_mirrored(exchange: Exchange) -> None:
    log.debug("request_mirrored", request_id=exchange.request_id, method=exchange.method, path=exchange.path,
              bytes=exchange.request_body_size)  # fmt: skip


def strip_shadow_suffix(host: str) -> str:
    """``api.example.com-shadow`` / ``api.example.com-shadow:8443`` -> without ``-shadow``.

    Envoy marks shadow copies by appending ``-shadow`` to the authority (recent versions put it
    before the port, old ones after it); the API's own host is what evidence and routing need.
    """
    if host.endswith("-shadow"):
        return host[: -len("-shadow")]
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and name.endswith("-shadow"):
        return f"{name[: -len('-shadow')]}:{port}"
    return host
