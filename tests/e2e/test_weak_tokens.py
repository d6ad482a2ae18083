"""Weak tokens end to end: JWTs through a real sensor (inline) -> token facts -> the collector's
``weak_tokens`` finding, its evidence and the recommendation."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp

from sensor.app import SensorRuntime
from tests.e2e.conftest import read_json, wait_for

HOUR = 3600


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def jwt(header: dict[str, Any], claims: dict[str, Any], signature: str = "c2lnbmF0dXJl") -> str:
    return f"{_b64(header)}.{_b64(claims)}.{signature}"


async def test_weak_tokens_become_findings_with_evidence(sensor: SensorRuntime, collector: str) -> None:
    now = int(time.time())
    alg_none = jwt({"alg": "none", "typ": "JWT"}, {"sub": "mallory", "iat": now, "exp": now + HOUR}, signature="")
    hs256_no_exp = jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "bob", "iat": now})
    rs256_48h = jwt({"alg": "RS256", "kid": "k1"}, {"sub": "alice", "iat": now, "exp": now + 48 * HOUR})
    rs256_good = jwt({"alg": "RS256", "kid": "k1"}, {"sub": "carol", "iat": now, "exp": now + HOUR})
    external = {"X-Forwarded-For": "81.2.69.160", "X-Forwarded-Proto": "https"}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    base = f"http://127.0.0.1:{sensor.listen_port}"
    async with aiohttp.ClientSession(base) as client:
        # Internal clients on /items/{id}: an unsigned token the backend accepts (200), and a 48 h token.
        for token in (alg_none, alg_none, rs256_48h):
            async with client.get("/items/1", headers=bearer(token)) as r:
                assert r.status == 200
        # From the internet: an HS256 token without exp (symmetric counts on external endpoints).
        for _ in range(2):
            async with client.get("/public/catalog", headers={**external, **bearer(hs256_no_exp)}) as r:
                assert r.status == 200
        # A sound token: RS256, one hour.
        async with client.post("/items", json={"name": "x"}, headers=bearer(rs256_good)) as r:
            assert r.status == 201

    async def both_found() -> bool:
        found = await read_json(collector, "/api/v1/findings", {"type": "weak_tokens", "status": "open"})
        return len(found["items"]) == 2

    assert await wait_for(both_found, timeout=10.0)
    found = await read_json(collector, "/api/v1/findings", {"type": "weak_tokens", "status": "open"})
    by_path = {f["endpoint"]["path"]: f for f in found["items"]}
    assert set(by_path) == {"/items/{id}", "/public/catalog"}

    items = by_path["/items/{id}"]
    assert items["severity"] == "high"  # the backend answered 200 to alg none
    assert items["evidence"] == {
        "facts": {"unsigned": 2, "alg_none": 2, "long_lifetime": 1},
        "jwt_requests": 3,
        "unsigned_accepted": 2,
        "external": False,
    }
    catalog = by_path["/public/catalog"]
    assert catalog["severity"] == "medium"
    assert catalog["evidence"] == {
        "facts": {"no_exp": 2, "symmetric": 2}, "jwt_requests": 2, "unsigned_accepted": 0, "external": True
    }

    endpoints = {(e["method"], e["path"]): e for e in (await read_json(collector, "/api/v1/endpoints"))["items"]}
    assert endpoints[("GET", "/items/{id}")]["token_facts"] == {
        "alg_none": 2, "jwt": 3, "long_lifetime": 1, "unsigned": 2, "unsigned_accepted": 2
    }
    assert endpoints[("POST", "/items")]["token_facts"] == {"jwt": 1}

    recs = {r["id"]: r for r in (await read_json(collector, "/api/v1/recommendations"))["items"]}
    weak = recs["weak-tokens-replaced"]
    assert weak["status"] == "unhealthy"
    assert {e["path"] for e in weak["affected_endpoints"]} == {"/items/{id}", "/public/catalog"}

    # No token text reaches the collector: only the facts.
    text = json.dumps([found, list(endpoints.values()), recs])
    for token in (alg_none, hs256_no_exp, rs256_48h, rs256_good):
        assert token not in text
