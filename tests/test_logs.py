"""apiward/logs.py: JSON lines that stay whole when two processes share one stdout (the sensor and its
proxy process do), also under ``PYTHONUNBUFFERED`` where ``print()`` writes the newline apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

LINES = 3000
WRITER = """
import sys
from apiward.logs import configure_logging, get_logger
configure_logging("info", component=sys.argv[1])
log = get_logger("t")
for i in range(int(sys.argv[2])):
    log.info("line_written", n=i, pad="x" * (i % 200))
"""


def test_two_processes_on_one_stdout_never_interleave_lines(tmp_path: Path) -> None:
    out = tmp_path / "shared.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(out, "ab") as shared:
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, name, str(LINES)], stdout=shared, env=env)
                 for name in ("a", "b")]
        for proc in procs:
            assert proc.wait(60) == 0
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # a torn or joined line fails here
    assert len(records) == 2 * LINES
    assert Counter(r["component"] for r in records) == {"a": LINES, "b": LINES}
    for name in ("a", "b"):
        assert [r["n"] for r in records if r["component"] == name] == list(range(LINES))
