"""``apiward-sensor`` as an operator runs it: one-line errors, a real process, admin endpoints."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sensor import analysis_compiled
from tests.conftest import free_port


def scrape(admin: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2) as resp:
        return str(resp.read().decode())


def run_sensor(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensor.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "inline mode needs --upstream URL"),
        (("--upstream", "ftp://x"), "--upstream must be an http(s) URL"),
        (("--upstream", "http://127.0.0.1:1", "--window", "0"), "--window must be between 1 and 3600"),
        (("--upstream", "http://127.0.0.1:1", "--trusted-proxies", "10.0.0.0/33"), "not a CIDR"),
        (("--upstream", "http://127.0.0.1:1", "--listen", "nowhere"), "listen address must be HOST:PORT"),
        (("--upstream", "http://127.0.0.1:1", "--config", "/nonexistent.yaml"), "cannot read config file"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    done = run_sensor(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("apiward-sensor: error:") and message in lines[0]


def test_config_file_analysis_process_takes_auto_true_false_only(tmp_path: Path) -> None:
    cfg = tmp_path / "sensor.yaml"
    cfg.write_text("upstream: http://127.0.0.1:1\nanalysis_process: sometimes\n")
    done = run_sensor("--config", str(cfg))
    assert done.returncode == 2 and "analysis_process must be auto, true or false, not 'sometimes'" in done.stderr


def test_config_file_unknown_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "sensor.yaml"
    cfg.write_text("upstream: http://127.0.0.1:1\nwindoww: 5\n")
    done = run_sensor("--config", str(cfg))
    assert done.returncode == 2 and "unknown setting(s) windoww" in done.stderr


def test_sensor_process_serves_admin_endpoints_and_stops_on_sigterm(tmp_path: Path) -> None:
    listen, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensor.cli", "--upstream", "http://127.0.0.1:9", "--listen", f"127.0.0.1:{listen}",
         "--admin-listen", f"127.0.0.1:{admin}", "--state-dir", str(tmp_path / "state"), "--window", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 15
        health = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1) as resp:
                    health = json.load(resp)
                break
            except OSError:
                time.sleep(0.1)
        assert health is not None and health["status"] == "ok"
        # the upstream (port 9) refuses: the proxy answers 502 with a problem document, and counts it
        req = urllib.request.Request(f"http://127.0.0.1:{listen}/anything")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 502
        problem = json.loads(err.value.read())
        assert problem["status"] == 502 and problem["request_id"] == err.value.headers["X-Request-ID"]
        # with the analysis process (auto on two CPUs) the counters arrive within COUNTERS_INTERVAL
        expected = ("apiward_sensor_upstream_errors_total 1.0", "apiward_sensor_exchanges_total 1.0")
        deadline = time.monotonic() + 5
        while not all(line in (metrics := scrape(admin)) for line in expected) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(line in metrics for line in expected), metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err_text = proc.communicate(timeout=20)
    assert proc.returncode == 0, err_text
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "sensor_started" in events and "sensor_stopped" in events
    assert (tmp_path / "state" / "principal.key").exists()


def _children(pid: int) -> list[str]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
        kids = fh.read().split()
    out = []
    for kid in kids:
        with contextlib.suppress(OSError), open(f"/proc/{kid}/cmdline", "rb") as fh:
            out.append(fh.read().replace(b"\0", b" ").decode())
    return out


@pytest.mark.parametrize(
    ("cpus", "flag", "split"),
    [(1, None, False), (2, None, True), (2, "--no-analysis-process", False), (1, "--analysis-process", True)],
)
def test_analysis_process_is_auto_by_usable_cpus(tmp_path: Path, cpus: int, flag: str | None, split: bool) -> None:
    """Without a flag the sensor splits proxy and analysis when it may use two CPUs (here: its affinity
    mask), and says so in ``sensor_started`` and ``/metrics``; the flags force either way."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < cpus:
        pytest.fail(f"this test needs {cpus} CPUs, the machine gives {len(available)}")
    mask = available[:cpus]
    listen, admin = free_port(), free_port()
    # taskset (util-linux) rather than preexec_fn, which is unsafe beside threads
    args = ["taskset", "-c", ",".join(map(str, mask)), sys.executable, "-m", "sensor.cli",
            "--upstream", "http://127.0.0.1:9", "--listen", f"127.0.0.1:{listen}",
            "--admin-listen", f"127.0.0.1:{admin}", "--state-dir", str(tmp_path / "state"), *([flag] if flag else [])]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        metrics = ""
        while time.monotonic() < deadline and "apiward_sensor_analysis_process " not in metrics:
            with contextlib.suppress(OSError):
                metrics = scrape(admin)
            time.sleep(0.1)
        assert f"apiward_sensor_analysis_process {float(split)}" in metrics
        assert f"apiward_sensor_analysis_compiled {float(analysis_compiled())}" in metrics
        assert any("sensor.proxy_process" in c for c in _children(proc.pid)) == split
        with pytest.raises(urllib.error.HTTPError) as err:  # either way it proxies
            urllib.request.urlopen(f"http://127.0.0.1:{listen}/x", timeout=5)
        assert err.value.code == 502
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err_text = proc.communicate(timeout=30)
    assert proc.returncode == 0, err_text
    started = next(json.loads(line) for line in out.splitlines() if '"sensor_started"' in line)
    assert started["analysis_process"] is split and started["usable_cpus"] == cpus
    assert started["analysis_process_setting"] == ("auto" if flag is None else split)
    assert started["analysis_compiled"] is analysis_compiled()
