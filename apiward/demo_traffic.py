"""Traffic for the demo: internal and external clients, several auth schemes, and a few attacks.

External clients arrive "through a trusted hop": the sensor trusts the loopback address as a proxy,
so the ``X-Forwarded-For`` header these clients send is believed, exactly as behind a gateway.
The client addresses are ordinary public addresses used only as header values; nothing is sent to them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from apiward.demo_api import API_KEYS, SUBSCRIPTION_KEYS, TEST_CARDS, make_jwt

EXTERNAL_IPS = ["81.2.69.160", "81.2.69.192", "89.160.20.112", "2.125.160.216", "175.16.199.10", "67.43.156.7"]


@dataclass
class TrafficStats:
    sent: int = 0
    failed: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)


Step = tuple[str, str, dict[str, Any]]  # (kind, method+path, request kwargs)


def _external(ip: str, proto: str = "https") -> dict[str, str]:
    return {"X-Forwarded-For": ip, "X-Forwarded-Proto": proto}


def _pick_step(rng: random.Random) -> Step:
    ext_ip = rng.choice(EXTERNAL_IPS)
    user_jwt = make_jwt(f"user-{rng.randint(1, 6)}")
    roll = rng.random()
    if roll < 0.18:
        return ("anonymous", f"GET /api/products/{rng.randint(1, 20)}", {"headers": _external(ext_ip)})
    if roll < 0.26:
        return ("anonymous", "GET /api/products", {"headers": _external(ext_ip), "params": {"limit": "5"}})
    if roll < 0.32:
        q = rng.choice(["widget", "blue", "2", "gadget"])
        return ("anonymous", "GET /api/products/search", {"headers": _external(ext_ip), "params": {"q": q}})
    if roll < 0.44:
        return ("jwt", f"GET /api/users/{rng.randint(1, 6)}",
                {"headers": {**_external(ext_ip), "Authorization": f"Bearer {user_jwt}"}})
    if roll < 0.50:
        return ("jwt", "GET /api/users", {"headers": {"Authorization": f"Bearer {user_jwt}"}})
    if roll < 0.53:
        return ("anonymous", "GET /api/users", {"headers": _external(ext_ip)})  # answered 401
    if roll < 0.60:
        key = rng.choice(sorted(SUBSCRIPTION_KEYS))
        return ("subscription_key", "GET /api/orders", {"headers": {"Ocp-Apim-Subscription-Key": key}})
    if roll < 0.66:
        return ("anonymous", f"GET /api/orders/{rng.randint(5000, 5999)}", {"headers": _external(ext_ip)})
    if roll < 0.72:
        key = next(iter(API_KEYS))
        body = {"amount": rng.randint(5, 500), "currency": "EUR", "card_number": rng.choice(TEST_CARDS)}
        return ("api_key", "POST /api/payments", {"headers": {**_external(ext_ip), "X-Api-Key": key}, "json": body})
    if roll < 0.76:
        key = next(iter(API_KEYS))
        return ("api_key", f"GET /api/payments/pay_{rng.randint(10**6, 10**7)}",
                {"headers": {**_external(ext_ip), "X-Api-Key": key}})
    if roll < 0.80:
        body = {"username": f"user{rng.randint(1, 99)}", "password": "correct horse battery staple"}
        return ("anonymous", "POST /api/login", {"headers": _external(ext_ip, "http"), "json": body})
    if roll < 0.84:
        return ("api_key_query", "GET /api/legacy/export", {"params": {"api_key": next(iter(API_KEYS))},
                                                            "headers": _external(ext_ip, "http")})
    if roll < 0.90:
        return ("internal", "GET /internal/stats", {})
    if roll < 0.92:
        return ("anonymous", "GET /api/v1/catalog", {"headers": _external(ext_ip)})
    if roll < 0.95:
        body = {"name": "New Person", "email": "new.person@example.com", "phone": "+44 20 7946 0958"}
        return ("jwt", "POST /api/users", {"headers": {"Authorization": f"Bearer {user_jwt}"}, "json": body})
    return _attack_step(rng, ext_ip)


def _attack_step(rng: random.Random, ip: str) -> Step:
    attacker = {"X-Forwarded-For": "185.220.101.34", "X-Forwarded-Proto": "https"}
    choice = rng.randrange(5)
    if choice == 0:
        return ("attack", "GET /api/products/search", {"headers": attacker, "params": {"q": "' OR '1'='1' --"}})
    if choice == 1:
        return ("attack", "GET /api/products/search",
                {"headers": attacker, "params": {"q": "<script>alert(document.cookie)</script>"}})
    if choice == 2:
        return ("attack", "GET /api/products/..%2f..%2fetc%2fpasswd", {"headers": attacker})
    if choice == 3:
        return ("attack", "GET /api/users/1", {"headers": {**attacker, "Authorization":
                                                            f"Bearer {make_jwt('admin', alg='none')}"}})
    return ("attack", "GET /api/products", {"headers": {**attacker, "User-Agent": "sqlmap/1.7.2#stable"}})


async def run_traffic(
    base_url: str,
    duration: float,
    *,
    concurrency: int = 4,
    rate: float = 60.0,
    seed: int = 7,
    on_progress: Callable[[TrafficStats], Awaitable[None] | None] | None = None,
    max_requests: int | None = None,
) -> TrafficStats:
    """Send demo traffic for ``duration`` seconds at about ``rate`` requests/s (bounded in count)."""
    stats = TrafficStats()
    rng = random.Random(seed)
    deadline = time.monotonic() + duration
    limit = max_requests if max_requests is not None else int(duration * rate) + 1
    interval = concurrency / rate
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base_url, timeout=timeout) as session:

        async def worker() -> None:
            while time.monotonic() < deadline and stats.sent < limit:
                kind, target, kwargs = _pick_step(rng)
                method, path = target.split(" ", 1)
                stats.sent += 1
                stats.by_kind[kind] += 1
                try:
                    async with session.request(method, path, **kwargs) as resp:
                        await resp.read()
                        stats.by_status[resp.status] += 1
                except (aiohttp.ClientError, TimeoutError):
                    stats.failed += 1
                await asyncio.sleep(interval * rng.uniform(0.5, 1.5))

        async def reporter() -> None:
            while time.monotonic() < deadline and stats.sent < limit:
                await asyncio.sleep(2.0)
                if on_progress:
                    result = on_progress(stats)
                    if result is not None:
                        await result

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        report = asyncio.create_task(reporter())
        try:
            await asyncio.gather(*workers)
        finally:
            report.cancel()
            for task in workers:
                task.cancel()
            await asyncio.gather(report, *workers, return_exceptions=True)
    return stats
