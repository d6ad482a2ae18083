"""Server-side render time of the dashboard's overview and endpoints pages with 10,000 endpoints.

    python -m bench.dashboard_render [--endpoints 10000] [--runs 15] [--database sqlite:///PATH | postgresql://...]

Seeds a store directly with sensor batches (10 APIs, a mix of authentication, external traffic, data
types, alerts, three summary windows per endpoint), then times complete GET requests for each page
through the collector app on 127.0.0.1 with a logged-in session: database queries, view building and
Jinja rendering, as a browser would wait for them. Goal: under 300 ms each (median).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.settings import CollectorSettings, Role, Token
from collector.store import Store
from sensor.events import (
    AlertClient,
    AlertEndpoint,
    AlertEvent,
    Batch,
    DataTypeSeen,
    Distribution,
    EndpointSummary,
    SensorInfo,
    SensorStats,
)

GOAL_MS = 300.0
READ = "bench-read-token-0123456789"
TYPES = ["email", "credit_card", "iban", "us_ssn", "phone_number", "jwt"]


def _summary(i: int, at: datetime) -> EndpointSummary:
    n = 5 + i % 40
    fields: dict[str, Any] = {
        "status_classes": {"2xx": n - 1, "4xx": 1},
        "auth_schemes": {"none": n} if i % 4 == 0 else {"jwt": n},
        "authenticated_success": 0 if i % 4 == 0 else n - 1,
        "unauthenticated_success": n - 1 if i % 4 == 0 else 0,
        "request_size": Distribution(count=n, p50=100, p95=200, max=300),
        "response_size": Distribution(count=n, p50=1000, p95=2000, max=3000),
        "latency_ms": Distribution(count=n, p50=5 + i % 9, p95=20 + i % 31, max=80),
    }
    if i % 3 == 0:
        fields.update(external_requests=n // 2, last_external=at)
    if i % 5 == 0:
        fields["data_types"] = [DataTypeSeen(type=TYPES[i % len(TYPES)], location="response_body", path="$.v",
                                             status_class="2xx")]
    return EndpointSummary(
        api=f"api-{i % 10}", method="GET" if i % 7 else "POST", path=f"/v1/res{i // 10}/item{i % 10}/{{id}}",
        window_start=at - timedelta(seconds=60), window_end=at, first_seen=at - timedelta(seconds=59), last_seen=at,
        requests=n, **fields,
    )


def _alert(i: int, at: datetime) -> AlertEvent:
    return AlertEvent(
        type=["SIG_SQLI", "API_SpikeInAPITraffic", "API_UnseenParam"][i % 3], title=f"alert {i}",
        severity=["high", "medium", "low"][i % 3],
        endpoint=AlertEndpoint(api=f"api-{i % 10}", method="GET" if i % 7 else "POST",
                               path=f"/v1/res{i // 10}/item{i % 10}/{{id}}"),
        client=AlertClient(ip=f"203.0.113.{i % 250}", principal=None),
        first_seen=at - timedelta(seconds=30), last_seen=at, count=1 + i % 5, evidence={"param": "id"}, rule_ids=[],
    )


async def seed(store: Store, endpoints: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    info = SensorInfo(id="bench-sensor", name="bench", version="0.1.0", mode="inline",
                      started_at=now - timedelta(hours=2))
    seq = 0
    for window in range(3):  # three windows per endpoint: the traffic chart has columns to draw
        at = now - timedelta(minutes=10 * (3 - window))
        for start in range(0, endpoints, 1000):
            seq += 1
            ids = range(start, min(start + 1000, endpoints))
            await store.apply_batch(Batch(
                batch_id=uuid.uuid4().hex, sensor=info, created_at=at, seq=seq,
                summaries=[_summary(i, at) for i in ids],
                alerts=[_alert(i, at) for i in ids if i % 50 == 0] if window == 2 else [],
                stats=SensorStats(exchanges=seq * 1000),
            ))


async def measure(client: TestClient[Any, Any], path: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        resp = await client.get(path)
        body = await resp.read()
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status == 200, (path, resp.status, body[:300])
    return times


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="apiward-bench-") as tmp:
        url = args.database or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = await Store.open(url)
        try:
            started = time.perf_counter()
            await seed(store, args.endpoints)
            counts = await store.inventory_counts(datetime.now(UTC))
            print(f"seeded {counts['endpoints']} endpoints in {counts['apis']} APIs on {store.dialect} "
                  f"in {time.perf_counter() - started:.1f}s")
            settings = CollectorSettings(tokens=[Token(Role.READ, READ, "bench")], sweep_seconds=0).validate()
            async with TestClient(TestServer(create_app(settings, store))) as client:
                resp = await client.post("/login", data={"token": READ}, allow_redirects=False)
                assert resp.status == 303
                api_id = re.search(r'href="/apis/([^"]+)"', await (await client.get("/")).text())
                pages = {
                    "overview": "/",
                    "endpoints (risk, page 1)": "/endpoints",
                    "endpoints (page 100, by name)": "/endpoints?sort=name&dir=asc&page=100",
                    "endpoints (filtered)": "/endpoints?authentication=unauthenticated&external=true",
                    "API collection": f"/apis/{api_id.group(1) if api_id else 'x'}",
                }
                print(f"{'page':32} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}  goal {GOAL_MS:.0f} ms")
                failed = False
                for name, path in pages.items():
                    await measure(client, path, 2)  # warm caches (SQLAlchemy statement cache, Jinja)
                    times = sorted(await measure(client, path, args.runs))
                    median = statistics.median(times)
                    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                    ok = median < GOAL_MS
                    failed |= not ok and name in ("overview", "endpoints (risk, page 1)")
                    print(f"{name:32} {median:10.1f} {p95:8.1f} {times[-1]:8.1f}  {'ok' if ok else 'OVER'}")
        finally:
            await store.close()
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--database", help="sqlite:///PATH or postgresql://... (default: a temporary SQLite file)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
