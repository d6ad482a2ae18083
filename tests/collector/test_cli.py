"""``serve`` and the readers as real processes on 127.0.0.1 (every process started is stopped)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.events import encode_batch
from tests.collector.conftest import ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN
from tests.collector.factories import DataTypeSeen, batch, summary

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIWARD_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True, text=True, timeout=60, env=env or _env(), cwd=ROOT, check=False,
    )


class Collector:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url

    def post(self, body: bytes, token: str | None = None) -> int:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{self.url}/api/v1/events", data=gzip.compress(body), headers=headers)
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)


def _start(tmp_path: Path, port: int, *flags: str, env: dict[str, str] | None = None) -> Collector:
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--listen", f"127.0.0.1:{port}",
         "--database", f"sqlite:///{tmp_path / 'c.db'}", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or _env(), cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return Collector(proc, url)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError("collector did not become ready")


@pytest.fixture
def started() -> Iterator[list[Collector]]:
    collectors: list[Collector] = []
    yield collectors
    for c in collectors:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait(timeout=10)


def test_serve_refuses_without_tokens(tmp_path: Path, port: int) -> None:
    result = _run("serve", "--listen", f"127.0.0.1:{port}", "--database", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no tokens configured" in result.stderr
    result = _run("serve", "--insecure-dev", "--listen", f"0.0.0.0:{port}")
    assert result.returncode == 2 and "loopback" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_insecure_dev_serve_and_readers(tmp_path: Path, port: int, started: list[Collector]) -> None:
    c = _start(tmp_path, port, "--insecure-dev", "--log-level", "info")
    started.append(c)
    b = batch([
        summary(path="/users/{id}", unauthenticated_success=1,
                data_types=[DataTypeSeen(type="email", location="response_body", status_class="2xx")]),
        summary(path="/orders", method="POST"),
    ])
    assert c.post(encode_batch(b)) == 200

    table = _run("endpoints", "--collector", c.url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "endpoint", "last"]
    assert any("get-users-id" in line and "GET /users/{id}" in line and "email(response_body)" in line
               for line in lines)
    as_json = _run("endpoints", "--collector", c.url, "--json", "--authentication", "unauthenticated")
    assert [e["path"] for e in json.loads(as_json.stdout)["items"]] == ["/users/{id}"]
    inv = _run("inventory", "--collector", c.url, "--json")
    assert json.loads(inv.stdout)["counts"]["endpoints"] == 2
    assert _run("alerts", "--collector", c.url).returncode == 0
    assert "sensor-1" in _run("inventory", "--collector", c.url).stdout

    c.proc.send_signal(signal.SIGTERM)
    assert c.proc.wait(timeout=20) == 0
    out = c.proc.stdout.read() if c.proc.stdout else ""
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "batch_ingested" in events and events[-1] == "collector_stopped"


def test_tokens_from_env_and_reader_errors(tmp_path: Path, port: int, started: list[Collector]) -> None:
    env = _env(
        APIWARD_INGEST_TOKENS=INGEST_TOKEN, APIWARD_READ_TOKENS=READ_TOKEN, APIWARD_ADMIN_TOKENS=ADMIN_TOKEN
    )
    c = _start(tmp_path, port, env=env)
    started.append(c)
    assert c.post(encode_batch(batch()), token=INGEST_TOKEN) == 200

    denied = _run("endpoints", "--collector", c.url)
    assert denied.returncode == 1
    assert len(denied.stderr.strip().splitlines()) == 1 and "401" in denied.stderr
    wrong_role = _run("endpoints", "--collector", c.url, env=_env(APIWARD_TOKEN=INGEST_TOKEN))
    assert wrong_role.returncode == 1 and "403" in wrong_role.stderr
    ok = _run("endpoints", "--collector", c.url, "--json", env=_env(APIWARD_TOKEN=READ_TOKEN))
    assert ok.returncode == 0 and len(json.loads(ok.stdout)["items"]) == 1
    via_env = _run("inventory", env=_env(APIWARD_TOKEN=ADMIN_TOKEN, APIWARD_COLLECTOR=c.url))
    assert via_env.returncode == 0, via_env.stderr

    c.proc.send_signal(signal.SIGINT)
    assert c.proc.wait(timeout=20) == 0
    out = (c.proc.stdout.read() if c.proc.stdout else "") + (c.proc.stderr.read() if c.proc.stderr else "")
    for secret in (INGEST_TOKEN, READ_TOKEN, ADMIN_TOKEN):
        assert secret not in out


def test_reader_reports_unreachable_collector(port: int) -> None:
    result = _run("alerts", "--collector", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot reach the collector" in result.stderr
    bad = _run("inventory", "--collector", "ftp://nope")
    assert bad.returncode == 1 and "http(s)" in bad.stderr


def test_posture_commands(tmp_path: Path, port: int, started: list[Collector]) -> None:
    from tests.collector.test_specs import PETSTORE3

    c = _start(tmp_path, port, "--insecure-dev", "--retention-days", "7")
    started.append(c)
    imported = _run("import-spec", str(PETSTORE3), "--api", "pets", "--collector", c.url)
    assert imported.returncode == 0, imported.stderr
    assert "imported 19 operations" in imported.stdout and "'pets'" in imported.stdout
    b = batch([summary(api="pets", path="/api/v3/hidden", unauthenticated_success=3, authenticated_success=0,
                       external_requests=1, last_external=summary().last_seen,
                       data_types=[DataTypeSeen(type="credit_card", location="response_body", status_class="2xx")])])
    assert c.post(encode_batch(b)) == 200

    found = _run("findings", "--collector", c.url, "--json", "--type", "shadow_endpoint")
    assert [f["endpoint"]["path"] for f in json.loads(found.stdout)["items"]] == ["/api/v3/hidden"]
    table = _run("findings", "--collector", c.url)
    assert table.returncode == 0 and "shadow_endpoint" in table.stdout
    recs = _run("recommendations", "--collector", c.url)
    assert "unhealthy" in recs.stdout and "Shadow endpoints should be documented or removed" in recs.stdout
    query = _run("query", "internet-exposed-sensitive-data", "--collector", c.url, "--json")
    assert [e["path"] for e in json.loads(query.stdout)["items"]] == ["/api/v3/hidden"]
    by_filter = _run("query", 'shadow and risk > 50', "--collector", c.url)
    assert by_filter.returncode == 0 and "/api/v3/hidden" in by_filter.stdout
    bad = _run("query", "shadow and and", "--collector", c.url)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "position 11" in bad.stderr
    missing = _run("import-spec", str(tmp_path / "nope.yaml"), "--collector", c.url)
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("openapi: 9.9.9\npaths: {}\n")
    refused = _run("import-spec", str(broken), "--collector", c.url)
    assert refused.returncode == 1 and "422" in refused.stderr and "/openapi" in refused.stderr
