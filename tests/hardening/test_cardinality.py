"""Cardinality: distinct paths, client IPs, principals and parameter values without end.

The analysis pipeline runs in its own process (``tests/hardening/cardinality.py``) so its RSS is its
own. CI: 12,000 exchanges with small route caches (1,024 routes, 256 templates); full
(APIWARD_HARDENING_FULL=1): 1,000,000 exchanges with the default caches.

"Nothing lost": zero analysis errors. "Bounded": RSS growth stays under ``RSS_BOUND`` (documented:
150 MiB over the idle pipeline with the default caches; measured about 75 MiB, flat after ~100,000
distinct keys as the route cache and the per-client LRUs fill); at full size the last half of the
run grows by less than ``PLATEAU`` (a plateau, not a slope).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.hardening.conftest import FULL, ROOT, size

MIB = 1024 * 1024
RSS_BOUND = 150 * MIB
PLATEAU = 16 * MIB
N = size(12_000, 1_000_000)


@pytest.mark.timeout(3600 if FULL else 150)
def test_rss_bounded_under_cardinality_load() -> None:
    args = [str(N)] if FULL else [str(N), "1024", "256"]
    out = subprocess.run(
        [sys.executable, "-m", "tests.hardening.cardinality", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=3500 if FULL else 140, check=True,
    ).stdout
    points = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert points[-1]["n"] == N and all(p.get("errors", 0) == 0 for p in points)
    base = points[0]["rss"]
    peak = max(p["rss"] for p in points)
    print(f"RSS idle {base / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB after {N} distinct exchanges")
    assert peak - base < RSS_BOUND
    if FULL:
        half = next(p for p in points if p["n"] >= N // 2)
        assert points[-1]["rss"] - half["rss"] < PLATEAU
