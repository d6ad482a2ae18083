"""Memory under cardinality for the behaviour engine: ``python -m bench.behaviour_memory``.

Drives ``--ips`` distinct client IPs and ``--paths`` distinct endpoint templates (1,000,000 and
200,000 by default) through ``BehaviourEngine.observe`` with every model live (learning set to one
request), each request carrying a path id, a query value, a principal, a user name on failures and
an id in the response, so that every per-key table fills up to its cap. Prints the resident memory
(VmRSS / VmHWM from /proc/self/status) before and after, the table sizes and the time per call, as
JSON. The test ``tests/sensor/test_behaviour_memory.py`` runs it in a subprocess and checks the
bound documented there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import msgspec
from multidict import CIMultiDict

from sensor.behaviour import BehaviourEngine
from sensor.behaviour.policy import bundled_behaviour_path, load_behaviour_policy
from sensor.exchange import Exchange
from sensor.observation import AuthEvidence, ClientInfo, JwtInfo, Observation, Route
from sensor.walk import Leaf


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--ips", type=int, default=1_000_000)
    ap.add_argument("--paths", type=int, default=200_000)
    args = ap.parse_args(argv)
    policy = load_behaviour_policy(bundled_behaviour_path())
    # Every model live from the first request, BOLA trusting every endpoint: all tables fill.
    policy = msgspec.structs.replace(
        policy,
        learning=msgspec.structs.replace(policy.learning, seconds=0.0, requests=1),
        bola=msgspec.structs.replace(policy.bola, min_references=0, max_benign_foreign=1.0, min_known_share=0.0),
    )
    engine = BehaviourEngine(policy)
    before = rss_kib()
    headers: CIMultiDict[str] = CIMultiDict({"User-Agent": "bench/1.0"})
    jwt = JwtInfo(alg="RS256")
    t0 = 1_767_225_600.0
    n = max(args.ips, args.paths)
    started = time.perf_counter()
    observe_time = 0.0
    for i in range(n):
        ts = t0 + i * 0.001  # 1,000 requests per second: rate buckets and windows roll too
        ip = f"{10 + (i >> 24) & 0xFF}.{(i >> 16) & 0xFF}.{(i >> 8) & 0xFF}.{i & 0xFF}"
        p = i % args.paths
        template = f"/t{p}/{{id}}"
        status = 401 if i % 17 == 0 else 200
        value = str(i * 7919)
        leaves = [
            Leaf("path", "path[0]", "", f"t{p}"),
            Leaf("path", "path[1]", f"t{p}", value),
            Leaf("query", "q", "q", f"v{i}"),
            Leaf("request_body", "$.username", "username", f"user{i % 50_000}"),
            Leaf("response_body", "$.id", "id", f"obj-{i}"),
        ]
        ex = Exchange(request_id="", method="GET", path=f"/t{p}/{value}", query_string=f"q=v{i}",
                      request_headers=headers, peer_ip=ip, status=status, started_at=ts)  # fmt: skip
        obs = Observation(
            route=Route(api="bench", template=template), method="GET", status=status,
            auth=AuthEvidence(schemes=("jwt",), principal=f"jwt:{i % 300_000:024x}", jwt=jwt),
            client=ClientInfo(ip=ip, external=True), scheme="https", timestamp=ts,
            request_size=100 + i % 1000, response_size=2000 + i % 5000, latency_ms=10.0 + i % 50,
            params=(("query", "q"), ("body", "username")),
        )  # fmt: skip
        s = time.perf_counter()
        engine.observe(obs, ex, leaves)
        observe_time += time.perf_counter() - s
        if i % 1000 == 999:
            engine.drain(ts)
    after = rss_kib()
    result = {
        "requests": n,
        "distinct_ips": args.ips,
        "distinct_paths": args.paths,
        "rss_before_kib": before[0],
        "rss_after_kib": after[0],
        "hwm_kib": after[1],
        "growth_mib": round((after[1] - before[0]) / 1024, 1),
        "observe_us": round(observe_time / n * 1e6, 2),
        "seconds": round(time.perf_counter() - started, 1),
        "tables": engine.sizes(),
        "errors": engine.counters.errors,
        "evicted": engine.counters.evicted,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
