"""Synthetic exchanges for the behaviour tests, the scenario simulator and the memory benchmark.

One function builds the triple the engine consumes, ``(Observation, Exchange, leaves)``, the way the
pipeline would: the leaves come from the real ``exchange_leaves`` walk over the synthesised request
and response, so the models see the same shapes as in production.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from multidict import CIMultiDict

from sensor.events import DataTypeSeen
from sensor.exchange import Exchange
from sensor.observation import AuthEvidence, ClientInfo, JwtInfo, Observation, Route
from sensor.walk import Leaf, WalkStats, exchange_leaves

__all__ = ["BROWSER_UA", "Triple", "make"]

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
Triple = tuple[Observation, Exchange, list[Leaf]]
_enc = msgspec.json.Encoder()


def make(
    method: str,
    path: str,
    *,
    ts: float,
    ip: str = "10.0.0.1",
    template: str | None = None,
    status: int = 200,
    query: str = "",
    body: object = None,
    response: object = None,
    principal: str | None = None,
    jwt: JwtInfo | None = None,
    schemes: tuple[str, ...] | None = None,
    user_agent: str = BROWSER_UA,
    data_types: Sequence[DataTypeSeen] = (),
    latency_ms: float = 25.0,
    request_size: int | None = None,
    response_size: int | None = None,
    api: str = "shop",
    external: bool = True,
    walk: bool = True,
) -> Triple:
    req = b"" if body is None else _enc.encode(body)
    resp = b"" if response is None else _enc.encode(response)
    headers: CIMultiDict[str] = CIMultiDict({"User-Agent": user_agent, "Accept": "application/json"})
    if req:
        headers["Content-Type"] = "application/json"
    ex = Exchange(
        request_id="r",
        method=method,
        path=path,
        query_string=query,
        request_headers=headers,
        peer_ip=ip,
        request_body=req,
        request_body_size=len(req) if request_size is None else request_size,
        status=status,
        response_headers=CIMultiDict({"Content-Type": "application/json"}) if resp else CIMultiDict(),
        response_body=resp,
        response_body_size=len(resp) if response_size is None else response_size,
        started_at=ts,
        duration_ms=latency_ms,
    )
    params: list[tuple[str, str]] = []
    if query:
        params.extend(("query", kv.split("=", 1)[0]) for kv in query.split("&") if kv)
    if isinstance(body, dict):
        params.extend(("body", str(k)) for k in body)
    if schemes is None:
        schemes = ("jwt",) if jwt is not None else (("bearer",) if principal else ("none",))
    walked = WalkStats()
    leaves = exchange_leaves(ex, stats=walked) if walk else []
    obs = Observation(
        route=Route(api=api, template=template or path),
        method=method,
        status=status,
        auth=AuthEvidence(schemes=schemes, principal=principal, jwt=jwt),
        client=ClientInfo(ip=ip, external=external),
        scheme="https",
        timestamp=ts,
        request_size=ex.request_body_size,
        response_size=ex.response_body_size,
        latency_ms=latency_ms,
        params=tuple(dict.fromkeys(params)),
        data_types=tuple(data_types),
        records=walked.records,
        records_path=walked.records_path,
        records_partial=walked.records_partial,
    )
    return obs, ex, leaves
