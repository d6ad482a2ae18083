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
    # templates and names come from the OpenAPI document the demo publishes
    assert lines["GET /api/products/{product_id}"].startswith("getProduct ")
    assert "unauthenticated" in lines["GET /api/products/{product_id}"]
    user = lines["GET /api/users/{user_id}"]
    assert " authenticated" in user and "jwt:" in user and "email(response_body)" in user
    assert "subscription_key:" in lines["GET /api/orders"]
    assert "api_key:" in lines["POST /api/payments"]
    # columns: name, method, path, last called (date, time), 30d unused, authentication, schemes, external
    assert lines["GET /internal/stats"].split()[8] == "no"  # never called from the internet
    assert "credit_card(response_body)" in lines["GET /api/payments/{payment_id}"]
    # the demo's attacks become signature alerts in the collector
    alerts = out.split("== Alerts")[1].split("== Findings")[0]
    assert "SIG_SQLI" in alerts and "SIG_XSS" in alerts and "185.220.101.34" in alerts
    # posture: the spec's gaps show up as findings, recommendations and template answers
    assert "== Findings" in out and "== Recommendations" in out and "== Explorer templates" in out
    findings = {(line.split()[1], line.split()[2] + " " + line.split()[3]) for line in out.split("== Findings")[1]
                .split("== Recommendations")[0].splitlines()[3:] if len(line.split()) >= 4}
    assert ("shadow_endpoint", "GET /internal/stats") in findings
    assert ("zombie_endpoint", "GET /api/v1/catalog") in findings
    assert ("auth_not_enforced", "GET /api/orders/{order_id}") in findings
    assert ("credentials_in_query", "GET /api/legacy/export") in findings
    recommendations = out.split("== Recommendations")[1].split("== Explorer templates")[0]
    assert any(line.split()[:2] == ["unhealthy", "high"] and "API endpoints should be authenticated" in line
               for line in recommendations.splitlines())
    attack_path = [line for line in out.splitlines()
                   if line.startswith("- Internet exposed APIs that are unauthenticated carry sensitive data")]
    assert attack_path and "GET /api/orders/{order_id}" in attack_path[0]
    assert (tmp_path / "apiward.db").exists()
    assert "Traceback" not in done.stderr
