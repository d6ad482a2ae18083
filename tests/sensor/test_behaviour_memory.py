"""Bounded memory: 1,000,000 distinct client IPs and 200,000 distinct endpoint templates through the
behaviour engine with every model live, in a fresh subprocess, measuring resident memory.

The bound, with the default caps of ``policies/behaviour.yaml``: the process's peak resident set
(VmHWM) grows by at most ``GROWTH_BOUND_MIB`` over the engine's start. Measured on CPython 3.11:
~200 MiB, reached once the tables are full (pairs 50k, clients 100k, object ids 100k, principals
20k, user names 20k, endpoints 5k, IP verdicts 16k, alert groups 10k) and flat after.

Every request here is a new IP and (mostly) a new endpoint: the costliest possible churn, ~50 us
per call instead of ~15 us in steady state. The subprocess raises the cyclic GC's first threshold
(``gc.set_threshold(100_000, 50, 100)``) because with a million live container objects the default
collections dominate run time; the engine creates no reference cycles, so this changes speed only,
never the memory measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GROWTH_BOUND_MIB = 256
ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import gc
gc.set_threshold(100_000, 50, 100)
from bench.behaviour_memory import main
main(["--ips", "1000000", "--paths", "200000"])
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resident_memory_stays_bounded_under_a_million_ips() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True, timeout=290
    )
    result = json.loads(out.stdout)
    assert result["errors"] == 0
    growth_mib = (result["hwm_kib"] - result["rss_before_kib"]) / 1024
    assert growth_mib < GROWTH_BOUND_MIB, result
    tables = result["tables"]
    assert tables["pairs"] <= 50_000 and tables["clients"] <= 100_000 and tables["endpoints"] <= 5000
    assert tables["object_ids"] <= 100_000 and tables["principals"] <= 20_000 and tables["groups"] <= 10_000
    assert result["evicted"]["clients"] >= 900_000  # the caps did the bounding
