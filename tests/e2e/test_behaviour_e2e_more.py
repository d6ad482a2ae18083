"""More behavioural alerts end to end: a real sensor in front of a small test backend, a real collector.

Every statistical alert type the engine raises per client is driven here through real sockets (the
fleet-level API_PopulationSpikeInAPITraffic / API_DistributedParameterEnumeration are proven with two
replicas elsewhere): ordinary traffic from several clients teaches the baselines, the test checks that
this benign traffic alone raised nothing, then each attack is played and its alert must arrive in the
collector's ``GET /api/v1/alerts`` with the right type, endpoint, client and evidence.

Thresholds are lowered through a policy directory, exactly as an operator would with ``--policies``:
learning after 20 requests, 1 s rate buckets, lower floors; everything else is the shipped policy.
The backend's behaviour (latency, response size, record count, a leaked card number) is steered by
``X-Test-*`` request headers, which are no parameters to the sensor.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from apiward.demo_api import make_jwt
from policies import __file__ as policies_init
from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.e2e.conftest import INGEST, read_json, serve, wait_for

SUSPICIOUS_IP = "203.0.113.77"
BENIGN_IPS = [f"81.2.69.{10 + i}" for i in range(6)]
TESTED = {
    "API_SpikeInAPITraffic", "API_SpikeInPayload", "API_SpikeInLatency", "API_SprayInRequests",
    "API_ParameterEnumeration", "API_UnseenParamType", "API_AccessFromSuspiciousIP", "API_BOLA",
    "API_CredentialStuffing", "API_ExcessiveDataExposure",
}  # fmt: skip
# Each user's orders (ids the sensor sees returned to their owner when they list them).
ORDERS = {
    u: [str(uuid.uuid5(uuid.NAMESPACE_URL, f"e2e/{u}/{k}")) for k in range(5)]
    for u in ("alice", "bob", "carol", "mallory")
}


def policy_dir(tmp_path: Path) -> Path:
    """The bundled behaviour policy with test-sized learning, buckets and floors."""
    p = yaml.safe_load((Path(policies_init).parent / "behaviour.yaml").read_text())
    p["learning"] = {"seconds": 0, "requests": 20}
    p["rate"].update(bucket_seconds=1, min_client=40, min_buckets=2)
    p["sizes"].update(min_request_bytes=4096, min_response_bytes=8192, min_latency_ms=300)
    p["distinct"].update(spray_min=12, enum_min=20)
    p["bola"]["min_references"] = 10
    out = tmp_path / "policies"
    (out / "iplists").mkdir(parents=True)
    (out / "iplists" / "tor-exit-nodes.txt").write_text("192.0.2.10\n")
    (out / "iplists" / "suspicious-ips.txt").write_text("203.0.113.0/24\n")
    (out / "behaviour.yaml").write_text(yaml.safe_dump(p))
    return out


class Backend:
    """A small API whose latency, sizes, record counts and leaks the test steers by header."""

    def __init__(self) -> None:
        self.rng = random.Random(5)
        self.orders = {oid for ids in ORDERS.values() for oid in ids}
        app = self.app = web.Application(client_max_size=4 * 1024 * 1024)
        r = app.router
        r.add_get("/catalog/{item_id}", self.catalog)
        r.add_get("/search", self.search)
        r.add_post("/upload", self.upload)
        r.add_get("/report", self.report)
        r.add_get("/slow", self.slow)
        r.add_post("/login", self.login)
        r.add_get("/orders", self.list_orders)
        r.add_get("/orders/{order_id}", self.get_order)  # BOLA: any order to any caller
        r.add_get("/users", self.users)
        r.add_get("/profile", self.profile)

    @staticmethod
    def sub(request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.count(".") != 2:
            return None
        payload = auth[7:].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["sub"])

    async def catalog(self, request: web.Request) -> web.Response:
        return web.json_response({"id": int(request.match_info["item_id"]), "name": "widget", "price": 12})

    async def search(self, request: web.Request) -> web.Response:
        return web.json_response({"q": request.query.get("q", ""), "hits": 3})

    async def upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"stored": len(body)}, status=201)

    async def report(self, request: web.Request) -> web.Response:
        return web.json_response({"report": "r" * int(request.headers.get("X-Test-Bytes", "200"))})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.headers.get("X-Test-Delay", "0")))
        return web.json_response({"ok": "done"})

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("password") != "correct-horse":
            return web.json_response({"error": "bad credentials"}, status=401)
        return web.json_response({"token": "opaque"})

    async def list_orders(self, request: web.Request) -> web.Response:
        sub = self.sub(request)
        if sub is None:
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response([{"id": oid, "total": 10} for oid in ORDERS.get(sub, [])])

    async def get_order(self, request: web.Request) -> web.Response:
        oid = request.match_info["order_id"]
        if self.sub(request) is None:
            return web.json_response({"error": "unauthorized"}, status=401)
        if oid not in self.orders:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response({"id": oid, "total": 10, "status": "shipped"})

    async def users(self, request: web.Request) -> web.Response:
        n = int(request.headers.get("X-Test-Records", "0")) or self.rng.randint(15, 25)
        return web.json_response({"users": [{"id": k, "name": f"user {k}", "team": "blue"} for k in range(n)]})

    async def profile(self, request: web.Request) -> web.Response:
        body = {"name": "Ada Lovelace", "email": "ada@example.com"}
        if request.headers.get("X-Test-Leak") == "card":
            body["card_number"] = "4111111111111111"  # a well-known test number
        return web.json_response(body)


Call = Callable[..., Awaitable[int]]


@asynccontextmanager
async def stack(tmp_path: Path, collector: str) -> AsyncIterator[tuple[SensorRuntime, Call]]:
    """Backend + sensor (shipping to the collector) + a client session; all stopped on exit. ``call``
    sends one request through the sensor as the client ``ip`` and returns the status."""
    backend = Backend()
    runner, port = await serve(backend.app)
    runtime = SensorRuntime(SensorConfig(
        upstream=f"http://127.0.0.1:{port}", listen="127.0.0.1:0", collector=collector, ingest_token=INGEST,
        window=1.0, trusted_proxies=["127.0.0.1/32"], api_name="e2e-more", state_dir=str(tmp_path / "sensor"),
        policies=str(policy_dir(tmp_path)),
    ).validate())  # fmt: skip
    await runtime.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime.listen_port}") as session:

            async def call(method: str, path: str, ip: str, *, headers: dict[str, str] | None = None,
                           **kw: Any) -> int:  # fmt: skip
                async with session.request(method, path, headers={"X-Forwarded-For": ip, **(headers or {})},
                                           **kw) as resp:  # fmt: skip
                    await resp.read()
                    return resp.status

            yield runtime, call
    finally:
        await runtime.stop()  # closes the windows and ships every alert group
        await runner.cleanup()


async def learn_then_stay_quiet(
    runtime: SensorRuntime, collector: str, benign: Callable[[int], Awaitable[None]]
) -> None:
    """Benign rounds 0-29 teach the models (learning ends at an endpoint's 20th request); once the 1 s
    buckets have rolled (the baselines exist), rounds 30-49 of the same benign traffic are judged
    against them. Then: no behavioural hit at all, and none of the tested types in the collector."""
    for i in range(30):
        await benign(i)
    await asyncio.sleep(1.2)
    behaviour = runtime.pipeline.behaviour
    assert all(ep.learned for ep in behaviour._endpoints.values())
    for i in range(30, 50):
        await benign(i)
    await asyncio.sleep(1.1)
    runtime.flush()
    assert behaviour.counters.errors == 0
    assert behaviour.counters.hits == 0, [(g.type, g.client, g.evidence) for g in behaviour._groups.values()]
    await asyncio.sleep(0.5)
    items = (await read_json(collector, "/api/v1/alerts"))["items"]
    assert [a for a in items if a["type"] in TESTED] == []


Expected = dict[str, Callable[[list[dict[str, Any]]], object]]


async def collected(collector: str, expected: Expected) -> list[dict[str, Any]]:
    """The collector's alerts once every expected one is there (the sensor has shipped all by now)."""
    items: list[dict[str, Any]] = []

    async def ready() -> bool:
        nonlocal items
        items = (await read_json(collector, "/api/v1/alerts", {"limit": "500"}))["items"]
        return all(check(items) for check in expected.values())

    if not await wait_for(ready, timeout=10):
        missing = [name for name, check in expected.items() if not check(items)]
        got = sorted((a["type"], a["endpoint"]["path"], a["client"]["ip"], a["evidence"].get("variant")) for a in items)
        raise AssertionError(f"missing {missing}; the collector has {got}")
    return items


def find(items: list[dict[str, Any]], type_: str, path: str, **match: object) -> dict[str, Any] | None:
    """The alert of ``type_`` on endpoint ``path`` whose client / evidence fields equal ``match``."""
    for a in items:
        if a["type"] != type_ or a["endpoint"]["path"] != path:
            continue
        fields = {**a["evidence"], "ip": a["client"]["ip"], "principal": a["client"]["principal"]}
        if all(fields.get(k) == v for k, v in match.items()):
            return a
    return None


def numbers(alert: dict[str, Any], *keys: str) -> list[float]:
    values = [alert["evidence"][k] for k in keys]
    assert all(isinstance(v, int | float) for v in values), alert["evidence"]
    return values


async def test_traffic_size_and_parameter_alerts(tmp_path: Path, collector: str) -> None:
    async with stack(tmp_path, collector) as (runtime, call):
        # -- benign: several clients, ordinary requests (several per 1 s bucket per endpoint, so that
        #    the size and latency baselines form; a handful per client) ---------------------------

        async def benign(i: int) -> None:
            ip = BENIGN_IPS[i % len(BENIGN_IPS)]
            assert await call("GET", f"/catalog/{1 + i % 5}", ip) == 200
            assert await call("GET", "/search", ip, params={"q": "lamp", "page": str(1 + i % 4)}) == 200
            assert await call("POST", "/upload", ip, json={"name": f"doc{i}", "data": "d" * (40 + i)}) == 201
            assert await call("GET", "/report", ip) == 200
            assert await call("GET", "/slow", ip) == 200

        await learn_then_stay_quiet(runtime, collector, benign)

        # -- attacks ---------------------------------------------------------------------------
        burst = "89.160.20.5"  # API_SpikeInAPITraffic: 160 requests at once to one endpoint
        assert set(await asyncio.gather(*(call("GET", "/catalog/3", burst) for _ in range(160)))) == {200}
        walker = "89.160.20.6"  # API_ParameterEnumeration: 40 distinct ids, paced under the rate limit
        for k in range(40):
            assert await call("GET", f"/catalog/{1000 + k}", walker) == 200
            await asyncio.sleep(0.04)
        big = "89.160.20.7"  # API_SpikeInPayload (request, response), API_SpikeInLatency
        assert await call("POST", "/upload", big, json={"name": "dump", "data": "d" * 200_000}) == 201
        assert await call("GET", "/report", big, headers={"X-Test-Bytes": "300000"}) == 200
        assert await call("GET", "/slow", big, headers={"X-Test-Delay": "2"}) == 200
        # API_UnseenParamType: "page" has only ever been an integer
        assert await call("GET", "/search", "89.160.20.8", params={"q": "lamp", "page": "1' OR '1'='1"}) == 200
        sprayer = "89.160.20.9"  # API_SprayInRequests: 16 endpoints from one IP
        probes = ["admin", "backup", "config", "debug", "git", "internal", "old", "phpinfo", "server-status",
                  "swagger", "test", "wp-admin", "actuator", "console", "metrics", "graphql"]  # fmt: skip
        for name in probes:
            assert await call("GET", f"/{name}", sprayer) == 404
        assert await call("GET", "/catalog/2", SUSPICIOUS_IP) == 200  # API_AccessFromSuspiciousIP

    items = await collected(collector, {
        "SpikeInAPITraffic": lambda items: find(items, "API_SpikeInAPITraffic", "/catalog/{id}", ip=burst),
        "ParameterEnumeration": lambda items: find(items, "API_ParameterEnumeration", "/catalog/{id}", ip=walker),
        "SpikeInPayload request": lambda items: find(items, "API_SpikeInPayload", "/upload", ip=big, variant="request"),
        "SpikeInPayload response": lambda items: find(items, "API_SpikeInPayload", "/report", ip=big,
                                                      variant="response"),
        "SpikeInLatency": lambda items: find(items, "API_SpikeInLatency", "/slow", ip=big),
        "UnseenParamType": lambda items: find(items, "API_UnseenParamType", "/search", ip="89.160.20.8"),
        "SprayInRequests": lambda items: [a for a in items
                                          if a["type"] == "API_SprayInRequests" and a["client"]["ip"] == sprayer],
        "AccessFromSuspiciousIP": lambda items: find(items, "API_AccessFromSuspiciousIP", "/catalog/{id}",
                                                     ip=SUSPICIOUS_IP),
    })  # fmt: skip

    spike = find(items, "API_SpikeInAPITraffic", "/catalog/{id}", ip=burst)
    assert spike is not None and spike["endpoint"]["method"] == "GET"
    observed, threshold, _ = numbers(spike, "observed", "threshold", "baseline")
    assert observed > threshold >= 40
    enum = find(items, "API_ParameterEnumeration", "/catalog/{id}", ip=walker)
    assert enum is not None and enum["evidence"]["location"] == "path" and enum["evidence"]["param"] == "{id}"
    observed, threshold, _ = numbers(enum, "observed", "threshold", "baseline")
    assert observed > threshold >= 20
    for path, variant, floor in (("/upload", "request", 4096), ("/report", "response", 8192)):
        payload = find(items, "API_SpikeInPayload", path, ip=big, variant=variant)
        assert payload is not None and payload["evidence"]["unit"] == "bytes"
        observed, threshold, baseline = numbers(payload, "observed", "threshold", "baseline")
        assert observed >= 200_000 > threshold > baseline and threshold >= 8 * baseline and observed >= floor
    latency = find(items, "API_SpikeInLatency", "/slow", ip=big)
    assert latency is not None and latency["evidence"]["unit"] == "ms" and latency["evidence"]["variant"] == "latency"
    observed, threshold, baseline = numbers(latency, "observed", "threshold", "baseline")
    assert observed >= 2000 > threshold > baseline
    unseen = find(items, "API_UnseenParamType", "/search", ip="89.160.20.8")
    assert unseen is not None
    assert (unseen["evidence"]["param"], unseen["evidence"]["observed"], unseen["evidence"]["baseline"]) == (
        "page",
        "text",
        ["int"],
    )
    spray = [a for a in items if a["type"] == "API_SprayInRequests" and a["client"]["ip"] == sprayer]
    assert spray and all(a["endpoint"]["path"] in {f"/{p}" for p in probes} for a in spray)
    observed, threshold, _ = numbers(spray[0], "observed", "threshold", "baseline")
    assert observed > threshold >= 12
    listed = find(items, "API_AccessFromSuspiciousIP", "/catalog/{id}", ip=SUSPICIOUS_IP)
    assert listed is not None and listed["severity"] == "high" and listed["evidence"]["list"] == "suspicious-ips"
    for a in items:  # the attacks raised nothing about the benign clients
        assert a["client"]["ip"] not in BENIGN_IPS, a


async def test_identity_and_data_exposure_alerts(tmp_path: Path, collector: str) -> None:
    users = ("alice", "bob", "carol", "mallory")
    tokens = {u: {"Authorization": f"Bearer {make_jwt(u)}"} for u in users}
    async with stack(tmp_path, collector) as (runtime, call):
        # -- benign ----------------------------------------------------------------------------

        async def benign(i: int) -> None:
            ip = BENIGN_IPS[i % len(BENIGN_IPS)]
            user = users[i % len(users)]
            ok = i % 7 != 3  # now and then a typo
            password = "correct-horse" if ok else "correct-hose"
            assert await call("POST", "/login", ip, json={"username": user, "password": password}) == (
                200 if ok else 401
            )
            assert await call("GET", "/orders", ip, headers=tokens[user]) == 200
            assert await call("GET", f"/orders/{ORDERS[user][i % 5]}", ip, headers=tokens[user]) == 200
            assert await call("GET", "/users", ip) == 200
            assert await call("GET", "/profile", ip, headers=tokens[user]) == 200

        await learn_then_stay_quiet(runtime, collector, benign)

        # -- attacks ---------------------------------------------------------------------------
        mallory_ip = "89.160.21.5"  # API_BOLA: mallory reads alice's orders
        assert await call("GET", "/orders", mallory_ip, headers=tokens["mallory"]) == 200
        for order in ORDERS["alice"][:3]:
            assert await call("GET", f"/orders/{order}", mallory_ip, headers=tokens["mallory"]) == 200
        stuffer = "89.160.21.6"  # API_CredentialStuffing: one password, many user names
        for k in range(14):
            assert (
                await call("POST", "/login", stuffer, json={"username": f"victim{k}", "password": "Summer2024!"}) == 401
            )
        dumper = "89.160.21.7"  # API_ExcessiveDataExposure, record_count: 5,000 users where ~20 are usual
        assert await call("GET", "/users", dumper, headers={"X-Test-Records": "5000"}) == 200
        leaker = "89.160.21.8"  # API_ExcessiveDataExposure, unusual_data_type: a card number in a profile
        assert await call("GET", "/profile", leaker, headers={**tokens["bob"], "X-Test-Leak": "card"}) == 200

    items = await collected(collector, {
        "BOLA": lambda items: find(items, "API_BOLA", "/orders/{uuid}", ip=mallory_ip),
        "CredentialStuffing": lambda items: find(items, "API_CredentialStuffing", "/login", ip=stuffer),
        "ExcessiveDataExposure record_count": lambda items: find(items, "API_ExcessiveDataExposure", "/users",
                                                                 ip=dumper, variant="record_count"),
        "ExcessiveDataExposure unusual_data_type": lambda items: find(items, "API_ExcessiveDataExposure", "/profile",
                                                                      ip=leaker, variant="unusual_data_type"),
    })  # fmt: skip

    bola = find(items, "API_BOLA", "/orders/{uuid}", ip=mallory_ip)
    assert bola is not None and bola["severity"] == "high" and bola["evidence"]["variant"] == "foreign_ids"
    assert bola["client"]["principal"] and "mallory" not in json.dumps(bola)  # a keyed hash, never the name
    assert bola["evidence"]["principal"] == bola["client"]["principal"]
    observed, threshold, baseline = numbers(bola, "observed", "threshold", "baseline")
    assert observed >= threshold == 2 and baseline == 0
    assert not any(o in json.dumps(items) for o in ORDERS["alice"])  # object ids stay in the sensor
    stuffing = find(items, "API_CredentialStuffing", "/login", ip=stuffer)
    assert stuffing is not None and stuffing["evidence"]["variant"] == "single_ip"
    observed, threshold, _ = numbers(stuffing, "observed", "threshold", "baseline")
    assert observed >= threshold == 10 and stuffing["evidence"]["status"] == 401
    assert "victim" not in json.dumps(stuffing)
    dump = find(items, "API_ExcessiveDataExposure", "/users", ip=dumper, variant="record_count")
    assert dump is not None and dump["endpoint"]["method"] == "GET"
    ev = dump["evidence"]
    assert ev["path"] == "$.users[*]" and ev["unit"] == "records" and ev["baseline_scope"] == "endpoint"
    observed, threshold, baseline = numbers(dump, "observed", "threshold", "baseline")
    assert 15 <= baseline <= 25 and 100 <= threshold < observed <= 5000
    # 5,000 records are ~230 KB: the sensor inspects the first 64 KiB and counts the records in it
    assert ev["observed_is_lower_bound"] is True
    leak = find(items, "API_ExcessiveDataExposure", "/profile", ip=leaker, variant="unusual_data_type")
    assert leak is not None and leak["evidence"]["data_type"] == "credit_card"
    assert leak["evidence"]["path"] == "$.card_number" and leak["evidence"]["baseline"] == 0
    assert "4111111111111111" not in json.dumps(items)
    for a in items:
        assert a["client"]["ip"] not in BENIGN_IPS, a
