"""Scenario simulator for the behaviour engine: ``python -m bench.behaviour_sim``.

Benign traffic from a realistic client population is generated in simulated time (a shop API:
login, catalogue, search, orders, profile; JWT users, anonymous browsers, NAT'd offices sharing an
IP, monitoring probes; a diurnal rate compressed into a two-hour cycle), fed through the engine with
a drain every simulated second. After the learning hour and a benign-only measurement phase, each
attack is injected in turn into continuing benign traffic. Reported per alert type: detected or not,
delay from the attack's start to the first alert shipped, and the false-alert rate on benign-only
traffic (alerts per 100,000 benign requests).

Goals (issue 5): every type detected within one window (60 s) of its attack's start; at most one
false alert per 100,000 benign requests.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sensor.behaviour import BehaviourEngine
from sensor.behaviour.synthetic import BROWSER_UA, Triple, make
from sensor.events import AlertEvent, DataTypeSeen
from sensor.observation import JwtInfo

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, aligned on minutes
DAY = 7200.0  # one simulated "day" (diurnal cycle), compressed
UAS = [
    BROWSER_UA,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "okhttp/4.12.0",
    "ShopApp/3.2.1 (iPhone; iOS 17.4; Scale/3.00)",
    "python-requests/2.31.0",
    "curl/8.5.0",
]
RS256 = JwtInfo(alg="RS256")
EMAIL_TYPE = DataTypeSeen(type="email", location="response_body", path="$.email")
CARD_TYPE = DataTypeSeen(type="credit_card", location="response_body", path="$.payment.card")


@dataclass
class User:
    name: str
    ip: str
    principal: str
    ua: str
    orders: list[str]
    listed: bool = False
    weight: float = 1.0


@dataclass
class World:
    rng: random.Random
    users: list[User]
    cum_weights: list[float]
    products: int = 5000
    rate: float = 15.0  # mean benign requests per second (attacks that are about volume scale with it)
    categories: tuple[str, ...] = ("books", "garden", "toys", "music", "kitchen", "sports", "tools", "games")
    words: tuple[str, ...] = ("red", "blue", "lamp", "chair", "gift", "kids", "sale", "new", "wood", "metal", "usb")


def build_world(seed: int, n_users: int = 3000) -> World:
    rng = random.Random(seed)
    users: list[User] = []
    office_ips = [f"100.64.{i // 250}.{i % 250 + 1}" for i in range(60)]  # NAT'd offices / mobile CGNAT
    for i in range(n_users):
        ip = rng.choice(office_ips) if rng.random() < 0.3 else f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        orders = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(rng.randint(1, 15))]
        users.append(
            User(f"user{i}@example.com", ip, f"jwt:{i:024x}", rng.choice(UAS), orders, weight=rng.paretovariate(1.5))
        )
    return World(rng, users, list(itertools.accumulate(u.weight for u in users)))


def diurnal(ts: float) -> float:
    return 1.0 + 0.7 * math.sin(2 * math.pi * (ts - T0) / DAY)


def benign_request(w: World, ts: float) -> Triple:
    rng = w.rng
    r = rng.random()
    if r < 0.03:  # monitoring probe
        return make("GET", "/health", ts=ts, ip=f"10.250.0.{rng.randint(1, 3)}", user_agent="kube-probe/1.29",
                    response={"ok": True}, latency_ms=2.0)  # fmt: skip
    user = rng.choices(w.users, cum_weights=w.cum_weights)[0]
    lat = rng.lognormvariate(math.log(40), 0.5)
    r = rng.random()
    if r < 0.02:
        ok = rng.random() > 0.05
        return make("POST", "/login", ts=ts, ip=user.ip, user_agent=user.ua, status=200 if ok else 401,
                    body={"username": user.name, "password": "x" * 12},
                    response={"token": "t"} if ok else {"error": "bad credentials"}, latency_ms=lat * 3)  # fmt: skip
    if r < 0.30:
        q = f"category={rng.choice(w.categories)}&page={rng.randint(1, 12)}"
        if rng.random() < 0.3:
            q += "&sort=" + rng.choice(("price", "-price", "rating"))
        items = [{"id": rng.randint(1, w.products), "name": "item", "price": rng.randint(1, 500)}
                 for _ in range(rng.randint(5, 20))]  # fmt: skip
        return make("GET", "/products", ts=ts, ip=user.ip, user_agent=user.ua, query=q, response={"items": items},
                    response_size=int(rng.lognormvariate(math.log(8000), 0.4)), latency_ms=lat)  # fmt: skip
    if r < 0.55:
        pid = min(w.products, int(rng.paretovariate(1.1)))
        return make("GET", f"/products/{pid}", template="/products/{id}", ts=ts, ip=user.ip, user_agent=user.ua,
                    response={"id": pid, "name": "item", "description": "a fine thing"}, latency_ms=lat,
                    response_size=int(rng.lognormvariate(math.log(1500), 0.3)))  # fmt: skip
    if r < 0.65:
        q = "q=" + "+".join(rng.choices(w.words, k=rng.randint(1, 3)))
        if rng.random() < 0.2:
            q += f"&page={rng.randint(2, 5)}"
        return make("GET", "/search", ts=ts, ip=user.ip, user_agent=user.ua, query=q, response={"items": []},
                    latency_ms=lat * 3, response_size=int(rng.lognormvariate(math.log(6000), 0.5)))  # fmt: skip
    if r < 0.73 or (r < 0.83 and not user.listed):
        user.listed = True
        return make("GET", "/orders", ts=ts, ip=user.ip, user_agent=user.ua, principal=user.principal, jwt=RS256,
                    response=[{"id": o, "total": 10} for o in user.orders], latency_ms=lat)  # fmt: skip
    authed = functools.partial(make, ts=ts, ip=user.ip, user_agent=user.ua, principal=user.principal, jwt=RS256)
    if r < 0.83:
        oid = rng.choice(user.orders)
        return authed("GET", f"/orders/{oid}", template="/orders/{id}",
                      response={"id": oid, "total": 10, "status": "shipped"}, latency_ms=lat)  # fmt: skip
    if r < 0.90:
        body: dict[str, object] = {"product_id": rng.randint(1, w.products), "quantity": rng.randint(1, 3)}
        if rng.random() < 0.2:
            body["note"] = "please " + rng.choice(w.words)
        if rng.random() < 0.05:
            body["coupon"] = rng.choice(("SPRING10", "WELCOME5"))
        oid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        user.orders.append(oid)
        return authed("POST", "/orders", status=201, body=body, response={"id": oid}, latency_ms=lat * 2)
    return authed("GET", "/users/me", data_types=[EMAIL_TYPE], response={"email": user.name, "name": "A B"},
                  latency_ms=lat)  # fmt: skip


def benign_stream(w: World, start: float, end: float, rate: float) -> Iterator[tuple[float, Triple]]:
    """Poisson arrivals at ``rate x diurnal(t)`` requests per second."""
    ts = start
    while True:
        ts += w.rng.expovariate(rate * diurnal(ts))
        if ts >= end:
            return
        yield ts, benign_request(w, ts)


# --------------------------------------------------------------------------------------------------
# attacks: each returns (timestamp, triple) items starting at ``t``

Attack = Callable[[World, float], list[tuple[float, Triple]]]


def _spread(t: float, n: int, seconds: float) -> list[float]:
    return [t + seconds * i / n for i in range(n)]


def a_population(w: World, t: float) -> list[tuple[float, Triple]]:
    # A botnet hits the catalogue at ~10x its daytime rate for two minutes.
    n = int(400 * w.rate)
    return [(ts, make("GET", "/products", ts=ts, ip=f"172.20.{i % 200}.{i % 250}", query="category=toys&page=1",
                      response={"items": []}, response_size=8000))
            for i, ts in enumerate(_spread(t, n, 120))]  # fmt: skip


def a_client_spike(w: World, t: float) -> list[tuple[float, Triple]]:
    u = w.users[7]
    return [(ts, make("GET", "/products/42", template="/products/{id}", ts=ts, ip=u.ip, user_agent=u.ua,
                      response={"id": 42}, response_size=1500)) for ts in _spread(t, 600, 60)]  # fmt: skip


def a_payload(w: World, t: float) -> list[tuple[float, Triple]]:
    u = w.users[11]
    out = [(t, make("GET", "/orders", ts=t, ip=u.ip, user_agent=u.ua, principal=u.principal, jwt=RS256, response=[],
                    response_size=25_000_000))]  # fmt: skip
    out.append((t + 5, make("POST", "/orders", ts=t + 5, ip=u.ip, user_agent=u.ua, status=201, principal=u.principal,
                            jwt=RS256, body={"product_id": 1, "quantity": 1}, request_size=4_000_000)))  # fmt: skip
    return out


def a_latency(w: World, t: float) -> list[tuple[float, Triple]]:
    u = w.users[13]
    return [(t + i, make("GET", "/search", ts=t + i, ip=u.ip, user_agent=u.ua, query="q=lamp",
                         latency_ms=9000.0)) for i in range(3)]  # fmt: skip


def a_spray(w: World, t: float) -> list[tuple[float, Triple]]:
    names = ["admin", "backup", "config", "debug", "env", "git", "internal", "login", "old", "phpinfo", "server-status",
             "swagger", "test", "upload", "wp-admin", "actuator", "console", "metrics", "graphql", "v2"]  # fmt: skip
    paths = [f"/{a}/{b}" for a in names for b in ("list", "status", "export", "keys", "users")]
    return [(ts, make("GET", p, ts=ts, ip="172.21.0.9", status=404)) for ts, p in zip(_spread(t, 100, 50), paths,
                                                                                      strict=False)]  # fmt: skip


def a_enumeration(w: World, t: float) -> list[tuple[float, Triple]]:
    return [(ts, make("GET", f"/products/{1000 + i}", template="/products/{id}", ts=ts, ip="172.22.0.5",
                      response={"id": 1000 + i})) for i, ts in enumerate(_spread(t, 300, 60))]  # fmt: skip


def a_distributed(w: World, t: float) -> list[tuple[float, Triple]]:
    out = []
    for i, ts in enumerate(_spread(t, 4000, 60)):
        oid = str(uuid.UUID(int=w.rng.getrandbits(128), version=4))
        out.append((ts, make("GET", f"/orders/{oid}", template="/orders/{id}", ts=ts, ip=f"172.23.{i % 100}.{i % 7}",
                             status=404, principal=f"jwt:bot{i % 100}", jwt=RS256)))  # fmt: skip
    return out


def a_unseen_type(w: World, t: float) -> list[tuple[float, Triple]]:
    return [(t, make("GET", "/products", ts=t, ip="172.24.0.3", query="category=toys&page=1%27%20OR%201%3D1--",
                     response={"items": []}))]  # fmt: skip


def a_unseen_param(w: World, t: float) -> list[tuple[float, Triple]]:
    u = w.users[21]
    return [(t, make("POST", "/orders", ts=t, ip=u.ip, user_agent=u.ua, status=201, principal=u.principal, jwt=RS256,
                     body={"product_id": 1, "quantity": 1, "is_admin": True, "price": 0}))]  # fmt: skip


def a_tor(w: World, t: float) -> list[tuple[float, Triple]]:
    return [(t, make("GET", "/products", ts=t, ip="192.0.2.10", query="category=toys&page=1"))]


def a_suspicious_ip(w: World, t: float) -> list[tuple[float, Triple]]:
    return [(t, make("GET", "/products", ts=t, ip="203.0.113.5", query="category=toys&page=1"))]


def a_user_agent(w: World, t: float) -> list[tuple[float, Triple]]:
    return [(t, make("GET", "/products", ts=t, ip="172.25.0.1", user_agent="sqlmap/1.8#stable (https://sqlmap.org)",
                     query="category=toys&page=1"))]  # fmt: skip


def a_bola(w: World, t: float) -> list[tuple[float, Triple]]:
    attacker = w.users[3]
    victims = [u for u in w.users[100:400] if u.listed][:5]
    out = []
    for i, v in enumerate(victims):
        ts = t + 2 * i
        oid = v.orders[0]
        out.append((ts, make("GET", f"/orders/{oid}", template="/orders/{id}", ts=ts, ip=attacker.ip,
                             user_agent=attacker.ua, principal=attacker.principal, jwt=RS256,
                             response={"id": oid, "total": 10})))  # fmt: skip
    return out


def a_bruteforce(w: World, t: float) -> list[tuple[float, Triple]]:
    return [(ts, make("POST", "/login", ts=ts, ip="172.26.0.7", status=401,
                      body={"username": "user5@example.com", "password": f"guess{i}"}))
            for i, ts in enumerate(_spread(t, 60, 40))]  # fmt: skip


def a_stuffing(w: World, t: float) -> list[tuple[float, Triple]]:
    return [(ts, make("POST", "/login", ts=ts, ip="172.27.0.8", status=401,
                      body={"username": f"victim{i}@mail.test", "password": "Summer2024!"}))
            for i, ts in enumerate(_spread(t, 40, 30))]  # fmt: skip


def a_broken_auth(w: World, t: float) -> list[tuple[float, Triple]]:
    none_jwt = JwtInfo(alg="none", unsigned=True, sub_hash="x")
    return [
        (t, make("GET", "/orders", ts=t, ip="172.28.0.2", principal="jwt:forged", jwt=none_jwt, response=[])),
        (t + 1, make("GET", "/orders", ts=t + 1, ip="172.28.0.2", response=[])),
    ]


def a_exposure(w: World, t: float) -> list[tuple[float, Triple]]:
    u = w.users[31]
    return [(t, make("GET", "/users/me", ts=t, ip=u.ip, user_agent=u.ua, principal=u.principal, jwt=RS256,
                     data_types=[EMAIL_TYPE, CARD_TYPE], response={"email": u.name}))]  # fmt: skip


def a_bulk_records(w: World, t: float) -> list[tuple[float, Triple]]:
    # The catalogue ignores the page size once: 5,000 products in one response (5-20 is usual).
    items = [{"id": 1 + i, "name": "item", "price": 1 + i % 500} for i in range(5000)]
    return [(t, make("GET", "/products", ts=t, ip="172.29.0.4", query="category=toys&page=1",
                     response={"items": items}))]  # fmt: skip


ATTACKS: list[tuple[str, Attack]] = [
    ("API_PopulationSpikeInAPITraffic", a_population),
    ("API_SpikeInAPITraffic", a_client_spike),
    ("API_SpikeInPayload", a_payload),
    ("API_SpikeInLatency", a_latency),
    ("API_SprayInRequests", a_spray),
    ("API_ParameterEnumeration", a_enumeration),
    ("API_DistributedParameterEnumeration", a_distributed),
    ("API_UnseenParamType", a_unseen_type),
    ("API_UnseenParam", a_unseen_param),
    ("API_AccessFromTorExitNode", a_tor),
    ("API_AccessFromSuspiciousIP", a_suspicious_ip),
    ("API_AccessFromSuspiciousUserAgent", a_user_agent),
    ("API_BOLA", a_bola),
    ("API_BruteForce", a_bruteforce),
    ("API_CredentialStuffing", a_stuffing),
    ("API_BrokenAuthentication", a_broken_auth),
    ("API_ExcessiveDataExposure", a_exposure),
    ("API_ExcessiveDataExposure", a_bulk_records),
]
# Scenarios of a type with several variants must raise their own variant (evidence "variant").
VARIANTS: dict[Attack, str] = {a_exposure: "unusual_data_type", a_bulk_records: "record_count"}


def scenario_name(alert_type: str, attack: Attack) -> str:
    variant = VARIANTS.get(attack)
    return f"{alert_type} ({variant})" if variant else alert_type


@dataclass
class Result:
    benign_requests: int = 0
    benign_alerts: list[AlertEvent] = field(default_factory=list)
    rows: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0


class Sim:
    """The engine, the world and a simulated clock that drains once per simulated second."""

    def __init__(self, engine: BehaviourEngine, world: World, clock: float = T0) -> None:
        self.engine = engine
        self.world = world
        self.clock = clock
        self.shipped: list[tuple[float, AlertEvent]] = []  # (drain time, alert)

    def feed(self, items: Iterable[tuple[float, Triple]]) -> int:
        n = 0
        for ts, (obs, ex, leaves) in items:
            self.advance(ts)
            self.engine.observe(obs, ex, leaves)
            n += 1
        return n

    def advance(self, to: float) -> None:
        while self.clock + 1.0 <= to:  # as the sensor's flush loop: a drain per second
            self.clock += 1.0
            self.shipped.extend((self.clock, a) for a in self.engine.drain(self.clock))

    def take(self) -> list[tuple[float, AlertEvent]]:
        out, self.shipped = self.shipped, []
        return out

    def attack_slot(self, alert_type: str, attack: Attack, t: float, slot: float, rate: float) -> dict[str, object]:
        """Benign traffic for ``slot`` seconds from ``t`` with the attack starting 30 s in."""
        start = t + 30.0
        attack_items = attack(self.world, start)
        attackers = {obs.client.ip for _, (obs, _, _) in attack_items}
        merged = sorted([*benign_stream(self.world, t, t + slot, rate), *attack_items], key=lambda item: item[0])
        self.feed(merged)
        self.advance(t + slot)
        shipped = self.take()
        variant = VARIANTS.get(attack)
        hits = [(at, a) for at, a in shipped if a.type == alert_type and at >= start
                and (variant is None or a.evidence.get("variant") == variant)]  # fmt: skip
        first = min((at for at, _ in hits), default=None)
        # An alert about a benign client during the slot is a false alert, whatever its type.
        false = [a for _, a in shipped if a.client.ip is not None and a.client.ip not in attackers]
        return {
            "type": alert_type,
            "scenario": scenario_name(alert_type, attack),
            "detected": bool(hits),
            "delay_s": None if first is None else round(first - start, 1),
            "alerts": sum(a.count for _, a in hits),
            "other_types": sorted({a.type for _, a in shipped if a.type != alert_type}),
            "false_alerts": len(false),
            "attack_requests": len(attack_items),
        }


def run(
    *, seed: int = 7, rate: float = 15.0, learn: float = 3600.0, measure: float = 7200.0, slot: float = 300.0,
    users: int = 3000,
) -> Result:  # fmt: skip
    sim = Sim(BehaviourEngine.from_policies(None), build_world(seed, users))
    sim.world.rate = rate
    result = Result()
    started = time.perf_counter()
    # Learning, then benign-only measurement.
    sim.feed(benign_stream(sim.world, T0, T0 + learn, rate))
    sim.take()
    result.benign_requests = sim.feed(benign_stream(sim.world, T0 + learn, T0 + learn + measure, rate))
    sim.advance(T0 + learn + measure)
    result.benign_alerts = [a for _, a in sim.take()]
    # Attacks, one per slot, merged into continuing benign traffic.
    t = T0 + learn + measure
    for alert_type, attack in ATTACKS:
        result.rows.append(sim.attack_slot(alert_type, attack, t, slot, rate))
        t += slot
    result.seconds = time.perf_counter() - started
    return result


def render(result: Result) -> str:
    lines = [
        "| alert type | detected | delay (s) | alert hits | false alerts in slot | other types in the slot |",
        "|---|---|---|---|---|---|",
    ]
    for row in result.rows:
        delay = "-" if row["delay_s"] is None else f"{row['delay_s']}"
        others = ", ".join(row["other_types"]) if row["other_types"] else ""  # type: ignore[arg-type]
        lines.append(f"| `{row['scenario']}` | {'yes' if row['detected'] else '**no**'} | {delay} | {row['alerts']} | "
                     f"{row['false_alerts']} | {others} |")  # fmt: skip
    n = result.benign_requests
    events = len(result.benign_alerts)
    hits = sum(a.count for a in result.benign_alerts)
    rate = events / n * 100_000 if n else 0.0
    lines.append("")
    lines.append(
        f"Benign-only phase: {n:,} requests after learning, {events} alert events ({hits} hits) = "
        f"{rate:.2f} false alerts per 100,000 benign requests."
    )
    if result.benign_alerts:
        kinds: dict[str, int] = {}
        for a in result.benign_alerts:
            kinds[a.type] = kinds.get(a.type, 0) + 1
        lines.append("False alerts by type: " + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())))
    lines.append(f"(simulated in {result.seconds:.1f} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate", type=float, default=15.0, help="mean benign requests per simulated second")
    ap.add_argument("--measure", type=float, default=7200.0, help="benign-only seconds after learning")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args(argv)
    result = run(seed=args.seed, rate=args.rate, measure=args.measure, users=args.users)
    print(render(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": result.rows, "benign_requests": result.benign_requests,
                       "benign_alert_events": len(result.benign_alerts)}, fh, indent=2)  # fmt: skip
    missed = [r for r in result.rows if not r["detected"]]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
