"""Cardinality load on the analysis pipeline, in its own process so its RSS is its own.

``python -m tests.hardening.cardinality N [ROUTE_CACHE MAX_TEMPLATES]`` analyses N exchanges, each with
a distinct path, client IP (X-Forwarded-For from a trusted proxy), principal and parameter values,
windows closing every 10,000 exchanges as in the running sensor, and prints one JSON line per
checkpoint: ``{"n": .., "rss": ..}``.
"""

from __future__ import annotations

import json
import sys
import time

from multidict import CIMultiDict, CIMultiDictProxy

from apiward.logs import configure_logging
from sensor.config import SensorConfig
from sensor.evidence import PrincipalHasher
from sensor.exchange import Exchange
from sensor.pipeline import Pipeline
from sensor.summary import SummaryAggregator


def rss() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


RESPONSE_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))


def exchange(i: int, t: float) -> Exchange:
    ip = f"{10 + (i >> 24) % 200}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    headers = CIMultiDictProxy(CIMultiDict({
        "X-Forwarded-For": ip, "Content-Type": "application/json", "X-Api-Key": f"key-{i:012d}",
    }))
    return Exchange(
        request_id=f"r{i}", method="POST", path=f"/tenants/t{i:x}/orders/{i * 7919}/x{i % 977}",
        query_string=f"q={i}&sort=s{i}&p{i % 50}=v{i}", request_headers=headers, peer_ip="127.0.0.1",
        request_body=json.dumps({"email": f"u{i}@example.com", "n": i, f"k{i % 100}": f"v{i}"}).encode(),
        request_body_size=80, status=200, response_headers=RESPONSE_HEADERS,
        response_body=json.dumps({"id": i, "token": f"t{i:x}"}).encode(), response_body_size=40, started_at=t,
    )


def main() -> None:
    n = int(sys.argv[1])
    cache = int(sys.argv[2]) if len(sys.argv) > 2 else 65536
    templates = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    configure_logging("warning", component="sensor", stream=sys.stderr)
    cfg = SensorConfig(upstream="http://127.0.0.1:1", api_name="cardinality", trusted_proxies=["127.0.0.1/32"],
                       route_cache_size=cache, max_templates=templates)
    aggregator = SummaryAggregator(60)
    pipeline = Pipeline(cfg, aggregator, PrincipalHasher(b"k" * 32))
    t = time.time()
    step = max(1, n // 10)
    print(json.dumps({"n": 0, "rss": rss()}), flush=True)
    for i in range(1, n + 1):
        t += 0.006  # 10,000 exchanges per minute: one window
        pipeline.submit(exchange(i, t))
        if i % 10_000 == 0:
            aggregator.drain(t, force=False)
        if i % step == 0:
            print(json.dumps({"n": i, "rss": rss(), "errors": pipeline.counters.analysis_errors}), flush=True)


if __name__ == "__main__":
    main()
