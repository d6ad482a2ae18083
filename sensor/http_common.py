"""Small HTTP helpers and bounds shared by the capture paths (both proxy paths and the mirror listener).

Everything here is pure (no IO) except ``problem_response`` which only builds a response object, so
it is tested through the proxy and mirror tests without extra fixtures.
"""

from __future__ import annotations

import errno
import os
import random
import re
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

if TYPE_CHECKING:
    from aiohttp import web

    from sensor.exchange import Exchange

# RFC 9110 7.6.1 connection-specific fields, plus the pre-standard ones proxies still see in the wild
# ("Proxy-Connection", "Trailers"). They describe one hop and must never be forwarded.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID_HEADER = "X-Request-ID"
PROBLEM_CONTENT_TYPE = "application/problem+json"


# -- shared by both proxy paths (sensor/proxy.py, sensor/fastpath.py) ---------------------------------

# Bodies with a declared length up to this size are read whole and sent in one write with their
# headers (request upstream, response to the client). Most API bodies are small, and the streaming
# path costs several extra socket writes and task switches per request; memory stays bounded by
# this size per in-flight request. Larger or unknown-length bodies stream.
SMALL_BODY = 64 * 1024
# Header section bounds (Envoy's defaults: 100 headers, 60 KiB). aiohttp bounds one line or field
# (cfg.max_header_bytes) and the count at 128, not the total: 127 fields of 16 KiB (2 MiB) would be
# forwarded to a backend that likely refuses them, or worse, buffers them. The total is
# HEADER_TOTAL_FACTOR x cfg.max_header_bytes (64 KiB with the default 16 KiB); above either -> 431.
MAX_HEADER_COUNT = 100
HEADER_TOTAL_FACTOR = 4

# Request headers the proxy sets itself or that describe the client<->sensor hop (framing, the
# 100-continue handshake the sensor already answered, the client's Host): never forwarded as sent.
PROXY_SET_REQUEST_HEADERS = (
    "Host", "Content-Length", "Expect", "X-Forwarded-Proto", "X-Forwarded-Host", REQUEST_ID_HEADER,
)
# Why a connection to the upstream failed, as the problem answers and exchanges name it.
ERRNO_NAMES = {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset", errno.EHOSTUNREACH: "unreachable"}


def sane_request_id(value: str | None) -> str:
    """The client's request id when it is safe to log and forward, else a fresh random 128-bit hex id.

    Ids end up in logs, SIEM records and upstream headers: a bounded charset keeps them from carrying
    injection payloads or blowing up log lines.
    """
    if value is not None and _REQUEST_ID_RE.fullmatch(value):
        return value
    return f"{_ids.getrandbits(128):032x}"


# Request ids need to be unique, not secret (they are echoed to clients and upstreams): 128 bits from
# a generator seeded by the OS is unique across processes and replicas, and costs no system call per
# request (secrets.token_hex asks the kernel every time: ~2 % of the proxy's CPU).
_ids = random.Random(secrets.randbits(256))
os.register_at_fork(after_in_child=lambda: _ids.seed(secrets.randbits(256)))


def connection_tokens(headers: MultiMapping[str]) -> set[str]:
    """Header names listed in (every) ``Connection`` header, lower-cased."""
    names: set[str] = set()
    for value in headers.getall("Connection", ()):
        for raw in value.split(","):
            token = raw.strip().lower()
            if token:
                names.add(token)
    return names


def end_to_end_headers(headers: MultiMapping[str], drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """A copy of ``headers`` without hop-by-hop fields, fields named in ``Connection`` and ``drop``.

    Duplicates and their order are kept (``Set-Cookie``, repeated ``Via`` ...).
    """
    skip = set(HOP_BY_HOP) | connection_tokens(headers) | {name.lower() for name in drop}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in skip:
            out.add(name, value)
    return out


def split_target(target: str) -> tuple[str, str]:
    """Split a raw request target into (raw path, raw query), both still percent-encoded.

    An absolute-form target (``http://other-host/x?y``) is reduced to its path and query: the sensor
    never lets the request line choose where a request goes, only the configured upstream does.
    Fragments (never legal on the wire, but the parser lets them through) are dropped.
    """
    if not target.startswith("/"):
        scheme_end = target.find("://")
        if scheme_end > 0:
            rest = target[scheme_end + 3 :]
            cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
            target = rest[cut:] if cut >= 0 else "/"
        # asterisk-form ("*") and authority-form have no path: they become "/" + target so the
        # upstream sees something well-formed; the router never sends them here anyway.
    target = target.partition("#")[0]
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    return path, query


def split_absolute_url(url: str) -> tuple[str, str, str] | None:
    """An absolute http(s) URL as (lower-case scheme, authority, request target), or None when it is
    not one (another scheme, no host, an unclosed IPv6 bracket). The target ("/path?query", "?query"
    or "") is for ``split_target``, as a live request's is. Credentials in a URL ("user:pass@host")
    are dropped from the authority: they must never become a Host header or any evidence."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        return None
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop, 0, end)
        if at >= 0:
            end = at
    authority = rest[:end].rpartition("@")[2]
    if authority.startswith("["):
        close = authority.find("]")
        host = authority[1:close] if close > 0 else ""
    else:
        host = authority.partition(":")[0]
    if not host:
        return None
    return scheme, authority, rest[end:]


def decode_path(raw_path: str) -> str:
    """The percent-decoded path (what analysis matches on), invalid UTF-8 kept as replacement chars."""
    return unquote(raw_path, errors="replace")


def frozen_headers(headers: MultiMapping[str]) -> CIMultiDictProxy[str]:
    """An immutable snapshot of a header multimap (an Exchange must not change under analysis)."""
    return CIMultiDictProxy(CIMultiDict(headers))


_encoder = msgspec.json.Encoder()


def problem_response(
    status: int,
    title: str,
    detail: str,
    request_id: str | None = None,
    *,
    type_: str = "about:blank",
    close: bool = False,
    extra: dict[str, object] | None = None,
) -> web.Response:
    """An RFC 9457 problem document. The sensor's own answers always carry the request id."""
    # Imported here: replay uses this module but never answers HTTP, and aiohttp's import (its TLS
    # context loads the system CA bundle) was a quarter of replay's start-up.
    from aiohttp import web

    doc: dict[str, object] = {"type": type_, "title": title, "status": status, "detail": detail}
    if request_id is not None:
        doc["request_id"] = request_id
    if extra:
        doc.update(extra)
    resp = web.Response(status=status, body=_encoder.encode(doc), content_type=PROBLEM_CONTENT_TYPE)
    if request_id is not None:
        resp.headers[REQUEST_ID_HEADER] = request_id
    if close:
        # The request body may be left unread (413, 408, 505): closing is cheaper and safer than
        # draining an arbitrary amount of client data to keep the connection.
        resp.force_close()
    return resp


def c_parser_in_use() -> bool:
    """True when aiohttp's server uses its C (llhttp-based) request parser.

    The pure-Python fallback parses some malformed inputs differently, and a sensor must see requests
    exactly as the upstream would; the check runs at start-up.
    """
    from aiohttp import web_protocol

    parser = getattr(web_protocol, "HttpRequestParser", None)
    return parser is not None and getattr(parser, "__module__", "") == "aiohttp._http_parser"


def log_request_proxied(logger: Any, exchange: Exchange) -> None:
    """The per-request debug line of both proxy paths (call it only at debug level: even a filtered
    structlog call costs a bind per request). Fields, never values: no headers, no bodies."""
    logger.debug(
        "request_proxied",
        request_id=exchange.request_id,
        method=exchange.method,
        path=exchange.path,
        status=exchange.status,
        duration_ms=round(exchange.duration_ms, 2),
        request_bytes=exchange.request_body_size,
        response_bytes=exchange.response_body_size,
        upstream_error=exchange.upstream_error,
    )
