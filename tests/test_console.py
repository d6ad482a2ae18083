"""Both command-line tools stop quietly when the reader of their output goes away (``| head``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apiward.console import EXIT_BROKEN_PIPE

REPO = Path(__file__).resolve().parents[1]


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m ARGS`` with standard output a pipe whose reading end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", *args], stdout=write_end, stderr=subprocess.PIPE,
                              cwd=REPO, timeout=60, check=False)
    finally:
        os.close(write_end)


def har(path: Path) -> Path:
    entries = [{
        "startedDateTime": f"2026-01-01T00:00:0{i}Z",
        "request": {"method": "GET", "url": f"https://shop.example.com/api/orders/{i}", "headers": []},
        "response": {"status": 200, "headers": [], "content": {"text": "{}"}},
    } for i in range(3)]
    path.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}))
    return path


@pytest.mark.parametrize(
    "command",
    [
        # a few bytes, still in the buffer when the command returns: written by the last flush
        pytest.param(("apiward.cli", "export", "--status", "--database", "sqlite:///{tmp}/c.db"), id="apiward"),
        pytest.param(("sensor.cli", "replay", "{har}", "--quiet"), id="apiward-sensor replay"),
    ],
)
def test_a_closed_output_pipe_ends_the_command_quietly(tmp_path: Path, command: tuple[str, ...]) -> None:
    args = [a.format(har=har(tmp_path / "x.har"), tmp=tmp_path) for a in command]
    done = run_into_closed_pipe(*args, *(["--state-dir", str(tmp_path / "state")] if "replay" in args else []))
    stderr = done.stderr.decode()
    assert done.returncode == EXIT_BROKEN_PIPE, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_output_that_is_read_is_unchanged(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sensor.cli", "replay", str(har(tmp_path / "x.har")), "--quiet",
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "3 entries read, 3 exchanges analysed" in done.stdout
