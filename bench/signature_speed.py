"""Signature cost per typical API request, with Hyperscan and with the pure-re fallback.

    python -m bench.signature_speed [--requests 2000] [--paranoia 2]

A typical request: a ~4 KiB JSON body flattened into ~40 leaves (ids, names, addresses, free text,
timestamps, URLs, amounts), a path with an id, four query parameters, nine headers and two cookies.
The items are built once per request outside the timed region (the payload walk belongs to
sensor/payload.py); the timed region is ``SignatureEngine.scan``: decoding transforms, the
multi-pattern scans, confirmation and scoring. Prints a Markdown table of median / p99 microseconds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

from sensor.signatures import ScanItem, SignatureEngine, build_items, hyperscan_available

_WORDS = [
    *("order", "customer", "delivery", "invoice", "address", "street", "city", "payment", "refund"),
    *("shipping", "express", "standard", "gift", "note", "please", "leave", "parcel", "door", "neighbour"),
    *("thanks", "weekend", "morning", "evening", "return", "policy", "size", "colour"),
]


def _leaf_value(rng: random.Random, key: str) -> object:
    if key.endswith("id"):
        return f"{rng.choice(['cus', 'ord', 'pi', 'prod'])}_{rng.getrandbits(64):016x}"
    if key.endswith("_at"):
        return f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T1{rng.randint(0, 9)}:2{rng.randint(0, 9)}:00Z"
    if key.endswith(("amount", "quantity", "count")):
        return rng.randint(1, 100000)
    if key.endswith("url"):
        return f"https://cdn.example.com/img/{rng.getrandbits(32):08x}.jpg"
    if key.endswith("email"):
        return f"user{rng.randint(1, 9999)}@example.com"
    n = rng.randint(1, 14)
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize()


def typical_request(rng: random.Random) -> list[ScanItem]:
    keys = ["id", "created_at", "customer.id", "customer.email", "customer.name", "customer.phone"]
    keys += [f"shipping.address.{k}" for k in ("line1", "line2", "city", "postal_code", "country")]
    keys += ["note", "description", "metadata.source", "metadata.campaign", "currency", "amount", "status"]
    for i in range(5):
        keys += [f"items.{i}.id", f"items.{i}.name", f"items.{i}.quantity", f"items.{i}.image_url"]
    body = {k: _leaf_value(rng, k) for k in keys}
    size = len(json.dumps(body))
    while size < 4096:  # pad descriptions until the body is ~4 KiB, like a real order payload
        body["description"] = f"{body['description']} {rng.choice(_WORDS)}"
        size = len(json.dumps(body))
    query = [
        ("expand", "customer"),
        ("limit", "20"),
        ("starting_after", f"ord_{rng.getrandbits(48):012x}"),
        ("q", "gift"),
    ]
    headers = [
        ("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"),
        ("Accept", "application/json"),
        ("Accept-Language", "en-GB,en;q=0.9"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"),
        ("X-Request-Id", f"{rng.getrandbits(128):032x}"),
        ("Referer", "https://shop.example.com/checkout"),
        ("Origin", "https://shop.example.com"),
    ]
    cookies = [("session", f"{rng.getrandbits(192):048x}"), ("locale", "en-GB")]
    path = f"/v1/orders/ord_{rng.getrandbits(64):016x}/items"
    return build_items(path, query, headers, cookies, list(body.items()))


def measure(engine: SignatureEngine, requests: list[list[ScanItem]], rounds: int = 3) -> list[float]:
    for req in requests[:50]:  # warm caches and the allocator
        engine.scan(req)
    times: list[float] = []
    for _ in range(rounds):
        for req in requests:
            t0 = time.perf_counter_ns()
            engine.scan(req)
            times.append((time.perf_counter_ns() - t0) / 1000.0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--paranoia", type=int, default=2)
    args = p.parse_args(argv)
    rng = random.Random(3)
    requests = [typical_request(rng) for _ in range(args.requests)]
    n_items = statistics.mean(len(r) for r in requests)
    engines = ["hyperscan", "re"] if hyperscan_available() else ["re"]
    print(f"typical request: {n_items:.0f} scan items, ~4 KiB JSON body; paranoia {args.paranoia}; one core\n")
    print("| engine | rules | median µs | p90 µs | p99 µs | goal (median ≤ 50 µs) |")
    print("|---|---:|---:|---:|---:|---|")
    for name in engines:
        eng = SignatureEngine.from_policies(paranoia=args.paranoia, engine=name)
        times = measure(eng, requests, rounds=3 if name == "hyperscan" else 1)
        times.sort()
        med = statistics.median(times)
        p90 = times[int(len(times) * 0.9)]
        p99 = times[int(len(times) * 0.99)]
        ok = "met" if med <= 50 else "not met"
        print(f"| {name} | {len(eng.rules)} | {med:.1f} | {p90:.1f} | {p99:.1f} | {ok} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
