"""The ``Exchange``: what the sensor saw of one request and its response.

Every capture path (inline proxy, mirror listener, exchange records, replay) produces one of these
and hands it to the pipeline. Bodies are *prefixes* (bounded by the inspection cap); the full sizes
are kept separately so summaries stay true for large bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

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
    # Enforce mode: the gate's signature verdict (a ``ScanResult``) when the gate saw this whole
    # request (the fast path); the analysis then reuses it instead of scanning the request again.
    request_verdict: object | None = None


class ExchangeSink(Protocol):
    """Where capture paths hand finished exchanges. ``submit`` must never raise nor block on IO:
    the pipeline analyses synchronously, counts and logs its own failures.

    A Protocol, not a base class: the pipeline satisfies it without inheriting, so the compiled
    build makes it a native class (a mypyc class with a Python base keeps a per-instance dict)."""

    def submit(self, exchange: Exchange) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class BatchingSink:
    """Hands exchanges to ``sink`` in batches, once per event-loop iteration, instead of one by one.

    The proxy finishes many exchanges per loop iteration under load; analysing each the moment its
    response is written interleaves the proxy's code and data with the analysis's on one core, and
    both keep evicting the other from the CPU caches. Running the analysis for all exchanges of an
    iteration back to back (as the ``--analysis-process`` side does with its batched frames) keeps
    it hot. Nothing waits longer than the current loop iteration; ``flush()`` runs what is queued
    (shutdown). Never raises into the capture path: ``sink`` counts its own failures.
    """

    def __init__(self, sink: ExchangeSink, call_soon: Callable[[Callable[[], None]], object]) -> None:
        self.sink = sink
        self._call_soon = call_soon
        self._queue: list[Exchange] = []

    def submit(self, exchange: Exchange) -> None:
        if not self._queue:
            self._call_soon(self.flush)
        self._queue.append(exchange)

    def flush(self) -> None:
        queue, self._queue = self._queue, []
        submit = self.sink.submit
        for exchange in queue:
            submit(exchange)
