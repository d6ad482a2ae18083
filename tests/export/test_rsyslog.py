"""Debian's rsyslog receives the collector's CEF over TCP (octet counting) and writes it to a file.

Under ``CI=true`` a missing ``rsyslogd`` fails the test (``.ci/run`` installs it); locally it skips.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.settings import CollectorSettings
from collector.store import Store
from tests.export.helpers import alert_ids, alerts, ingest, start, wait_metric, with_exporters
from tests.export.receivers import parse_cef

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if RSYSLOGD is None:
        if os.environ.get("CI") == "true":
            pytest.fail("rsyslogd is not installed (apt-get install rsyslog)")
        pytest.skip("rsyslogd is not installed")
    port, out = _free_port(), tmp_path / "cef.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{tmp_path}")
module(load="imtcp")
template(name="cef" type="string" string="%msgid% %app-name% %hostname% %msg%\\n")
ruleset(name="apiward") {{
  action(type="omfile" file="{out}" template="cef" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="apiward")
""")
    log = (tmp_path / "rsyslogd.log").open("wb")
    proc = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")], stdout=log, stderr=log
    )
    try:
        for _ in range(100):  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"rsyslogd exited: {(tmp_path / 'rsyslogd.log').read_text()}")
                import time

                time.sleep(0.05)
        yield port, out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_rsyslog_receives_valid_cef_over_tcp(
    sqlite_store: Store, rsyslog: tuple[int, Path], aiohttp_client: Any, settings: CollectorSettings
) -> None:
    port, out = rsyslog
    config = with_exporters(settings, f"""
exporters:
  - {{name: rsyslog, type: syslog, protocol: tcp, host: 127.0.0.1, port: {port}, hostname: apiward-ci,
     events: [alerts]}}
""")
    client = await start(aiohttp_client, config, sqlite_store)
    await ingest(client, alerts(5))
    await wait_metric(client, "apiward_export_sent_total", "rsyslog", 5)
    expected = await alert_ids(client)
    lines: list[str] = []
    async with asyncio.timeout(10):
        while len(lines) < 5:
            await asyncio.sleep(0.1)
            lines = out.read_text().splitlines() if out.exists() else []
    seen = set()
    for line in lines:
        msgid, app, host, cef = line.split(" ", 3)
        assert (msgid, app, host) == ("alert", "apiward", "apiward-ci")  # rsyslog parsed RFC 5424
        header, ext = parse_cef(cef)
        assert header[:5] == ["0", "apiward", "apiward", "0.1.0", "SIG_SQLI"]
        seen.add(ext["externalId"])
    assert seen == expected
