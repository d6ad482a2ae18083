"""Hardening suite fixtures: sizes (CI vs full), real sensor/collector processes, /proc probes.

Sizes: the reduced size runs by default (CI); ``APIWARD_HARDENING_FULL=1`` selects the full size the
issue names (500 slowloris connections, 100 MiB bodies, millions of distinct keys). Every process a
test starts is stopped by its fixture, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sensor.cpus import usable_cpus
from tests.conftest import free_port

FULL = os.environ.get("APIWARD_HARDENING_FULL") == "1"
ROOT = Path(__file__).resolve().parents[2]


def size(ci: int, full: int) -> int:
    """The CI size, or the full size with APIWARD_HARDENING_FULL=1."""
    return full if FULL else ci


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.03)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SensorProcess:
    """``python -m sensor.cli`` (the real ``apiward-sensor``) with a YAML config, logs in a file."""

    def __init__(self, workdir: Path, **settings: Any) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.settings: dict[str, Any] = {
            "listen": f"127.0.0.1:{self.port}",
            "state_dir": str(workdir / "state"),
            "log_level": "info",
            "spec_sync_interval": 0,
            **settings,
        }
        self.config = workdir / "sensor.yaml"
        self.log_path = workdir / "sensor.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The sensor's main process (analysis, shipping; with the analysis process, its parent)."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def split(self) -> bool:
        """Whether the sensor runs its proxy in a child process: the setting, or auto (the default of
        ``apiward-sensor``: on with two usable CPUs; the child inherits this process's affinity)."""
        setting = self.settings.get("analysis_process", "auto")
        return usable_cpus() >= 2 if setting in (None, "auto") else bool(setting)

    def serving_pid(self, timeout: float = 20.0) -> int:
        """The process that holds the client connections: the proxy child when split, else the main one."""
        if not self.split:
            return self.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in child_pids(self.pid):
                if "sensor.proxy_process" in cmdline(child):
                    return child
            time.sleep(0.03)
        raise RuntimeError(f"the sensor {self.pid} has no proxy process after {timeout}s")

    def pids(self) -> list[int]:
        """Every process of the sensor (for memory: both halves count)."""
        return [self.pid, self.serving_pid()] if self.split else [self.pid]

    def start(self) -> SensorProcess:
        self.config.write_text(yaml.safe_dump(self.settings))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sensor.cli", "--config", str(self.config)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_port(self.port, proc=self.proc)
        self.serving_pid()  # with the analysis process, its child is up too
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def sensor_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[SensorProcess] = []

    def make(name: str = "sensor", **settings: Any) -> SensorProcess:
        proc = SensorProcess(tmp_path / name, **settings)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


class PyProcess:
    """Any ``python -m module args`` helper process (backends, fakes) that listens on a port."""

    def __init__(self, module: str, *args: str, port: int) -> None:
        self.port = port
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_port(port, proc=self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.log.close()


@pytest.fixture
def bench_backend() -> Iterator[str]:
    """bench/backend.py in its own process (GET /api/items/{id}, POST /api/items echoes)."""
    port = free_port()
    proc = PyProcess("bench.backend", str(port), port=port)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


# PostgreSQL and SQLite databases for the collector tests (same fixtures as tests/collector).
from tests.collector.conftest import _reset_pg, db_url, pg_database  # noqa: E402, F401
