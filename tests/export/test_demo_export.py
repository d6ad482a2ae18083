"""The demo's own alerts (collector + sensor + demo API + attack traffic) reach a syslog receiver as
valid CEF and an HTTP receiver as OCSF and as SecurityAlert-style JSON."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from apiward import demo
from apiward.demo_traffic import run_traffic
from collector.app import create_app
from collector.export.config import parse
from collector.settings import CollectorSettings
from tests.export.receivers import http_receiver, parse_cef, stream_syslog


def _cef(message: bytes) -> tuple[list[str], dict[str, str]]:
    return parse_cef("CEF:" + message.decode().partition(" - CEF:")[2])


@pytest.mark.slow
async def test_demo_alerts_reach_every_siem_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with stream_syslog() as syslog_rx, http_receiver("/ocsf") as ocsf_rx, http_receiver("/sa") as sa_rx:
        exporters = parse(f"""
delivery: {{poll_seconds: 0.05, backoff_initial_seconds: 0.05, backoff_max_seconds: 0.2}}
exporters:
  - {{name: cef, type: syslog, protocol: tcp, host: 127.0.0.1, port: {syslog_rx.port}, events: [alerts]}}
  - {{name: ocsf, type: ocsf, url: "{ocsf_rx.url}", events: [alerts]}}
  - {{name: sa, type: security_alert, url: "{sa_rx.url}", events: [alerts]}}
""", "demo-exporters.yaml", {})

        def with_exporters(settings: CollectorSettings) -> web.Application:
            return create_app(dataclasses.replace(settings, exporters=exporters, recommendation_check_seconds=0))

        # The demo builds its own settings; this is where an operator's --exporters file would come in.
        monkeypatch.setattr(demo, "create_app", with_exporters)
        args = argparse.Namespace(collector_listen="127.0.0.1:0", sensor_listen="127.0.0.1:0",
                                  api_listen="127.0.0.1:0", window=1.0, rate=80.0, duration=4.0, data_dir=None)
        run = demo.Demo(args, tmp_path)
        try:
            await run.start()
            await run_traffic(run.sensor_url, 4.0, rate=80.0)
            assert await run.settle()
            alerts: list[dict[str, Any]] = await run.fetch_all("/api/v1/alerts")
            expected = {a["id"] for a in alerts}
            assert len(expected) >= 3, [a["type"] for a in alerts]  # the scenario's attacks raised alerts

            def ids_cef() -> set[str]:
                return {_cef(m)[1]["externalId"] for m in syslog_rx.messages}

            def ids_json(rx: Any, key: Any) -> set[str]:
                return {key(r) for _, body in rx.requests for r in json.loads(body)}

            async with asyncio.timeout(20):
                while not (
                    expected <= ids_cef()
                    and expected <= ids_json(ocsf_rx, lambda r: r["finding_info"]["uid"])
                    and expected <= ids_json(sa_rx, lambda r: r["SystemAlertId"])
                ):
                    await asyncio.sleep(0.1)
            types = {a["type"] for a in alerts}
            assert {_cef(m)[0][4] for m in syslog_rx.messages} >= types
        finally:
            await run.stop()
