"""Mirror mode: the sensor receives *copies* of traffic and never answers for the API.

Two ways in, on one listener:

* mirrored requests (nginx ``mirror``, Envoy/Istio ``request_mirror_policies``): any method and path.
  The sensor keeps the first ``cfg.inspect_bytes`` of the body, drains the rest, answers 204 and only
  then submits an ``Exchange`` (``source="mirror"``, ``status=0``: the real response is not seen).
  nginx sends the original target in ``X-Original-URI`` (when configured as in examples/); Envoy marks
  its shadow copies by appending ``-shadow`` to the host, which is removed again for host evidence.
* ``POST /apiward/v1/exchanges``: exchange records (request *and* response) as an API gateway policy
  sends them, one JSON object or an array. Validated strictly; nothing is submitted unless the whole
  document is valid.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import socket
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from apiward.logs import get_logger
from sensor.config import SensorConfig
from sensor.exchange import Exchange, ExchangeSink
from sensor.fastpath_mirror import (
    RECORDS_PATH,
    MirrorClient,
    log_request_mirrored,
    mirrored_exchange,
)
from sensor.fastpath_site import FastSite
from sensor.http_common import (
    REQUEST_ID_HEADER,
    decode_path,
    problem_response,
    sane_request_id,
    split_absolute_url,
    split_target,
)

log = get_logger("sensor.mirror")

CHUNK_SIZE = 256 * 1024


@dataclass(slots=True)
class MirrorCounters:
    mirrored_requests: int = 0
    records_accepted: int = 0
    records_rejected: int = 0  # POSTs refused (400/413/415/422), not records
    truncated_bodies: int = 0  # bodies longer than inspect_bytes (prefix kept, size reported)
    body_timeouts: int = 0
    analysis_errors: int = 0
    client_disconnects: int = 0  # senders gone before their request was read (fast path)
    fast_path_handoffs: int = 0  # connections the fast path handed to the aiohttp app

    # the names the fast path's connection code counts under (sensor/fastpath.py)
    @property
    def requests(self) -> int:
        return self.mirrored_requests

    @requests.setter
    def requests(self, value: int) -> None:
        self.mirrored_requests = value

    @property
    def client_body_timeouts(self) -> int:
        return self.body_timeouts

    @client_body_timeouts.setter
    def client_body_timeouts(self, value: int) -> None:
        self.body_timeouts = value


@dataclass(slots=True)
class _MirrorState:
    cfg: SensorConfig
    sink: ExchangeSink
    counters: MirrorCounters
    debug: bool = False  # per-request log lines only then


MIRROR_STATE_KEY = web.AppKey("apiward_mirror_state", _MirrorState)


# ---------------------------------------------------------------------------------------------------
# the exchange record (wire contract with gateway policies)

HeaderValue = str | list[str]
Method = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{1,20}$")]
Status = Annotated[int, msgspec.Meta(ge=0, le=599)]  # 0: the gateway did not get a response
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Encoding = Literal["utf-8", "base64"]


class ExchangeRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One request/response pair as seen by a gateway. ``url`` is absolute or path+query.

    ``started_at`` is ISO 8601 or epoch seconds; missing means "now". Bodies are text (``utf-8``) or
    ``base64``; they are truncated to ``inspect_bytes`` after decoding and their full size is kept.
    """

    method: Method
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]
    status: Status = 0
    request_headers: dict[str, HeaderValue] = {}
    request_body: str = ""
    request_body_encoding: Encoding = "utf-8"
    response_headers: dict[str, HeaderValue] = {}
    response_body: str = ""
    response_body_encoding: Encoding = "utf-8"
    client_ip: str | None = None
    started_at: str | float | None = None
    duration_ms: NonNegative = 0.0
    request_id: str | None = None  # the gateway's id for the call; a fresh one when absent or insane


_decode_one = msgspec.json.Decoder(ExchangeRecord)
_decode_many = msgspec.json.Decoder(list[ExchangeRecord])


class RecordError(ValueError):
    """A record is invalid: ``field`` is a JSON path (``$[2].client_ip``)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


_AT_PATH = re.compile(r" - at `(?P<path>[^`]*)`$")


# ---------------------------------------------------------------------------------------------------
# application


def build_mirror_app(cfg: SensorConfig, sink: ExchangeSink, counters: MirrorCounters | None = None) -> web.Application:
    state = _MirrorState(cfg=cfg, sink=sink, counters=counters if counters is not None else MirrorCounters(),
                         debug=cfg.log_level == "debug")
    # client_max_size bounds request.read(), used by the records endpoint only; mirrored bodies are
    # streamed and bounded by inspect_bytes.
    app = web.Application(client_max_size=cfg.record_max_bytes)
    app[MIRROR_STATE_KEY] = state
    app.router.add_post(RECORDS_PATH, _records)
    app.router.add_route("*", "/{tail:.*}", _mirrored)
    return app


async def start_mirror(
    cfg: SensorConfig,
    sink: ExchangeSink,
    host: str,
    port: int,
    counters: MirrorCounters | None = None,
    *,
    sock: socket.socket | None = None,
) -> web.AppRunner:
    """Start the mirror listener on ``host:port``, or on an already listening ``sock`` (the listener
    process of ``--analysis-process``); the caller owns the runner."""
    app = build_mirror_app(cfg, sink, counters)
    runner = web.AppRunner(
        app,
        auto_decompress=False,  # the Exchange keeps bodies as sent, like the inline proxy does
        keepalive_timeout=cfg.keepalive_timeout,
        max_line_size=cfg.max_header_bytes,
        max_field_size=cfg.max_header_bytes,
        access_log=None,
    )
    await runner.setup()
    site: web.BaseSite
    if sock is not None:
        host, port = sock.getsockname()[:2]
    if cfg.fast_path:  # plain mirrored requests at the protocol level, the rest through this app
        site = FastSite(runner, app[MIRROR_STATE_KEY], host, port, sock, client=MirrorClient)
    elif sock is not None:
        site = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("mirror_started", listen=f"{host}:{port}", fast_path=isinstance(site, FastSite))
    return runner


def _submit(state: _MirrorState, exchange: Exchange) -> None:
    try:
        state.sink.submit(exchange)
    except Exception as exc:
        state.counters.analysis_errors += 1
        # The type only: an exception message can quote request data, which must not reach the logs.
        log.warning("exchange_submit_failed", request_id=exchange.request_id, error=type(exc).__name__)


async def _send_now(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Write the answer before analysis runs (the sender must never wait on the sensor)."""
    try:
        await resp.prepare(request)
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


# ---------------------------------------------------------------------------------------------------
# mirrored requests


async def _mirrored(request: web.Request) -> web.StreamResponse:
    state = request.app[MIRROR_STATE_KEY]
    cfg = state.cfg
    state.counters.mirrored_requests += 1
    started_at, t0 = time.time(), time.perf_counter()
    rid = sane_request_id(request.headers.get(REQUEST_ID_HEADER))

    prefix = bytearray()
    size = 0
    error: str | None = None
    try:
        while True:
            async with asyncio.timeout(cfg.client_body_timeout):
                chunk = await request.content.read(CHUNK_SIZE)
            if not chunk:
                break
            size += len(chunk)
            room = cfg.inspect_bytes - len(prefix)
            if room > 0:
                prefix += chunk[:room]
            # the rest is drained and dropped: the sender needs the request consumed to reuse the
            # connection, the sensor only ever analyses the prefix
    except TimeoutError:
        state.counters.body_timeouts += 1
        error = "client_body_timeout"
    except (web.RequestPayloadError, ConnectionError):
        error = "client_disconnect"
    if size > cfg.inspect_bytes:
        state.counters.truncated_bodies += 1

    answer: web.StreamResponse
    if error is None:
        answer = await _send_now(request, web.Response(status=204, headers={REQUEST_ID_HEADER: rid}))
    elif error == "client_body_timeout":
        answer = problem_response(408, "Request Timeout", "request body stalled", rid, close=True)
        await _send_now(request, answer)
        request.protocol.force_close()  # the sender is stalled: don't linger on its body
    else:
        answer = web.Response(status=400)  # never sent: the connection is gone
        request.protocol.force_close()

    exchange = mirrored_exchange(
        rid=rid, method=request.method, target=request.raw_path, headers=CIMultiDict(request.headers),
        peer=request.remote or "", listener_scheme=request.scheme,
        http_version=f"{request.version.major}.{request.version.minor}", body=bytes(prefix), size=size,
        started_at=started_at, duration_ms=(time.perf_counter() - t0) * 1000.0, error=error,
    )  # fmt: skip
    _submit(state, exchange)
    if state.debug:
        log_request_mirrored(exchange)
    # Return the answer object that was already sent: aiohttp sees it finished and writes nothing more.
    return answer


# ---------------------------------------------------------------------------------------------------
# exchange records


def _problem(status: int, title: str, detail: str, rid: str, field: str | None = None) -> web.Response:
    return problem_response(status, title, detail, rid, extra={"field": field} if field else None)


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a gzip/deflate records document, bounded (a 1 MB bomb must not become 1 GB)."""
    wbits = 31 if encoding == "gzip" else 15
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise OverflowError
    if not inflater.eof:
        raise zlib.error("truncated compressed body")
    return out


async def _records(request: web.Request) -> web.StreamResponse:
    state = request.app[MIRROR_STATE_KEY]
    cfg, counters = state.cfg, state.counters
    rid = sane_request_id(request.headers.get(REQUEST_ID_HEADER))
    limit = cfg.record_max_bytes

    def reject(resp: web.Response) -> web.Response:
        counters.records_rejected += 1
        return resp

    if request.content_length is not None and request.content_length > limit:
        return reject(problem_response(413, "Content Too Large", f"records above {limit} bytes", rid, close=True))
    try:
        async with asyncio.timeout(cfg.client_body_timeout):
            raw = await request.read()  # bounded by client_max_size (= record_max_bytes)
    except web.HTTPRequestEntityTooLarge:
        return reject(problem_response(413, "Content Too Large", f"records above {limit} bytes", rid, close=True))
    except TimeoutError:
        return reject(problem_response(408, "Request Timeout", "request body stalled", rid, close=True))

    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("gzip", "deflate"):
        try:
            raw = _inflate(raw, encoding, limit)
        except OverflowError:
            return reject(problem_response(413, "Content Too Large", f"records above {limit} bytes", rid))
        except zlib.error as exc:
            return reject(_problem(400, "Bad Request", f"cannot decompress body: {exc}", rid))
    elif encoding != "identity":
        return reject(_problem(415, "Unsupported Media Type", f"content encoding {encoding!r}", rid))

    stripped = raw.lstrip()
    many = stripped.startswith(b"[")
    try:
        records = _decode_many.decode(raw) if many else [_decode_one.decode(raw)]
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT_PATH.search(message)
        field = match.group("path") if match else "$"
        return reject(_problem(422, "Unprocessable Content", message, rid, field=field))
    except msgspec.DecodeError as exc:
        return reject(_problem(400, "Bad Request", f"not valid JSON: {exc}", rid))
    if many and len(records) > cfg.record_max_batch:
        return reject(
            problem_response(413, "Content Too Large", f"at most {cfg.record_max_batch} records per request", rid)
        )

    peer = request.remote or ""
    try:
        exchanges = [
            _record_exchange(rec, f"$[{i}]" if many else "$", cfg, peer, request.scheme)
            for i, rec in enumerate(records)
        ]
    except RecordError as exc:
        return reject(_problem(422, "Unprocessable Content", exc.detail, rid, field=exc.field))

    counters.records_accepted += len(exchanges)
    counters.truncated_bodies += sum(
        (ex.request_body_size > len(ex.request_body)) + (ex.response_body_size > len(ex.response_body))
        for ex in exchanges
    )
    answer = await _send_now(
        request, web.json_response({"accepted": len(exchanges)}, status=202, headers={REQUEST_ID_HEADER: rid})
    )
    for exchange in exchanges:
        _submit(state, exchange)
    log.debug("records_accepted", request_id=rid, count=len(exchanges))
    return answer  # already sent


def _headers(values: dict[str, HeaderValue]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in values.items():
        for item in [value] if isinstance(value, str) else value:
            out.add(name, item)
    return out


def _body(text: str, encoding: str, field: str, inspect: int) -> tuple[bytes, int]:
    if encoding == "base64":
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RecordError(field, f"`{field}` is not valid base64") from exc
    else:
        data = text.encode("utf-8", "surrogatepass")
    return data[:inspect], len(data)


def _epoch(value: str | float | None, field: str) -> float:
    if value is None:
        return time.time()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise RecordError(field, f"`{field}` is not an ISO 8601 timestamp") from exc
        if parsed.tzinfo is None:
            raise RecordError(field, f"`{field}` needs a time zone (e.g. Z)")
        return parsed.timestamp()
    if not 0 <= value < 1e11:  # seconds, not milliseconds
        raise RecordError(field, f"`{field}` must be epoch seconds")
    return float(value)


def _record_exchange(rec: ExchangeRecord, at: str, cfg: SensorConfig, peer: str, scheme: str) -> Exchange:
    if rec.url.startswith("/"):
        raw_path, raw_query = split_target(rec.url)
        host = None
    else:
        parts = split_absolute_url(rec.url)
        if parts is None:
            raise RecordError(f"{at}.url", f"`{at}.url` must be absolute http(s) or start with '/'")
        scheme, host, target = parts
        raw_path, raw_query = split_target(target)
    if rec.client_ip is not None:
        try:
            ipaddress.ip_address(rec.client_ip)
        except ValueError as exc:
            raise RecordError(f"{at}.client_ip", f"`{at}.client_ip` is not an IP address") from exc
    request_headers = _headers(rec.request_headers)
    if host and "Host" not in request_headers:
        request_headers["Host"] = host
    request_body, request_size = _body(
        rec.request_body, rec.request_body_encoding, f"{at}.request_body", cfg.inspect_bytes
    )
    response_body, response_size = _body(
        rec.response_body, rec.response_body_encoding, f"{at}.response_body", cfg.inspect_bytes
    )
    return Exchange(
        request_id=sane_request_id(rec.request_id),
        method=rec.method.upper(),
        path=decode_path(raw_path),
        query_string=raw_query,
        request_headers=CIMultiDictProxy(request_headers),  # built here: no copy
        peer_ip=peer,
        listener_scheme=scheme,
        request_body=request_body,
        request_body_size=request_size,
        status=rec.status,
        response_headers=CIMultiDictProxy(_headers(rec.response_headers)),
        response_body=response_body,
        response_body_size=response_size,
        started_at=_epoch(rec.started_at, f"{at}.started_at"),
        duration_ms=rec.duration_ms,
        source="record",
        client_ip_hint=rec.client_ip,
    )
