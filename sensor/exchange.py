"""The ``Exchange``: what the sensor saw of one request and its response.

Every capture path (inline proxy, mirror listener, exchange records, replay) produces one of these
and hands it to the pipeline. Bodies are *prefixes* (bounded by the inspection cap); the full sizes
are kept separately so summaries stay true for large bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from multidict import CIMultiDict, MultiMapping

EMPTY_HEADERS: MultiMapping[str] = CIMultiDict()


@dataclass(slots=True)
class Exchange:
    request_id: str
    method: str
    path: str  # the decoded path of the request target, without the query string
    query_string: str  # raw query string (no leading "?")
    request_headers: MultiMapping[str]
    peer_ip: str  # the socket peer (or the gateway that sent the record)
    listener_scheme: str = "http"  # scheme of the listener the request arrived on
    http_version: str = "1.1"
    request_body: bytes = b""  # first N bytes
    request_body_size: int = 0  # total bytes seen (may exceed len(request_body))
    status: int = 0  # 0 when no response was received (upstream failure)
    response_headers: MultiMapping[str] = field(default_factory=lambda: EMPTY_HEADERS)
    response_body: bytes = b""
    response_body_size: int = 0
    started_at: float = 0.0  # epoch seconds
    duration_ms: float = 0.0
    source: str = "inline"  # "inline" | "mirror" | "record" | "replay"
    # The client address as told by a trusted source (exchange record from a gateway); when set it
    # wins over X-Forwarded-For evaluation.
    client_ip_hint: str | None = None
    # mTLS: the subject of a verified peer certificate on the sensor's own TLS listener.
    peer_cert_subject: str | None = None
    upstream_error: str | None = None  # "refused" | "timeout" | ... when status is a sensor answer


class ExchangeSink:
    """Where capture paths hand finished exchanges. ``submit`` must never raise nor block on IO:
    the pipeline analyses synchronously, counts and logs its own failures."""

    def submit(self, exchange: Exchange) -> None:  # pragma: no cover - interface
        raise NotImplementedError
