"""`apiward demo` as a user runs it: a real process, real ports, its printed report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_short_run_prints_inventory(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "apiward.cli", "demo", "--duration", "6", "--window", "1",
        "--collector-listen", "127.0.0.1:0", "--sensor-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
        "--data-dir", str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "sending traffic for 6s" in out
    assert "sent " in out  # progress while traffic runs
    assert "== Inventory" in out and "== Endpoints" in out and "== Alerts" in out
    lines = {line.split()[1] + " " + line.split()[2]: line for line in out.splitlines() if line.count(" /") and
             len(line.split()) > 4 and line.split()[1] in ("GET", "POST")}
    # the demo API's known facts, as the sensor learned them from traffic
    assert "unauthenticated" in lines["GET /api/products/{id}"]
    assert " authenticated" in lines["GET /api/users/{id}"] and "jwt:" in lines["GET /api/users/{id}"]
    assert "subscription_key:" in lines["GET /api/orders"]
    assert "api_key:" in lines["POST /api/payments"]
    # columns: name, method, path, last called (date, time), 30d unused, authentication, schemes, external
    assert lines["GET /internal/stats"].split()[8] == "no"  # never called from the internet
    assert (tmp_path / "apiward.db").exists()
    assert "Traceback" not in done.stderr
