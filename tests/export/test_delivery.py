"""Delivery end to end: the collector app ingests alerts, the outbox and dispatchers deliver them to
real receivers (syslog over UDP, TCP and TLS; HTTP), through outages, black holes and replicas.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

from collector.export import webhook
from collector.settings import CollectorSettings, Role
from collector.store import Store
from tests.collector.conftest import bearer
from tests.export.helpers import (
    Client,
    alert_ids,
    alerts,
    ingest,
    json_bodies,
    metric,
    start,
    wait_metric,
    with_exporters,
)
from tests.export.receivers import SyslogReceiver, http_receiver, make_certificate, parse_cef, stream_syslog, udp_syslog


def _cef_of(message: bytes) -> tuple[list[str], dict[str, str]]:
    # <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG
    header, _, msg = message.decode().partition(" - CEF:")
    assert header.startswith("<") and ">1 " in header, header
    return parse_cef("CEF:" + msg)


async def _syslog_roundtrip(
    aiohttp_client: Any, settings: CollectorSettings, store: Store, receiver: SyslogReceiver, *, protocol: str,
    extra: str = "",
) -> None:
    config = with_exporters(settings, f"""
exporters:
  - name: siem
    type: syslog
    protocol: {protocol}
    host: 127.0.0.1
    port: {receiver.port}
    hostname: collector-test
    events: [alerts]
{extra}""")
    client = await start(aiohttp_client, config, store)
    await ingest(client, alerts(3))
    messages = await receiver.wait_for(3)
    parsed = [_cef_of(m) for m in messages]
    assert {ext["externalId"] for _, ext in parsed} == await alert_ids(client)
    for header, ext in parsed:
        assert header[:5] == ["0", "apiward", "apiward", "0.1.0", "SIG_SQLI"] and header[6] == "8"
        assert ext["src"].startswith("198.51.100.") and ext["reason"] == "alert.created"
    await wait_metric(client, "apiward_export_sent_total", "siem", 3)


async def test_syslog_udp(sqlite_store: Store, aiohttp_client: Any, settings: CollectorSettings) -> None:
    async with udp_syslog() as receiver:
        await _syslog_roundtrip(aiohttp_client, settings, sqlite_store, receiver, protocol="udp")


async def test_syslog_tcp_octet_counting(sqlite_store: Store, aiohttp_client: Any, settings: CollectorSettings) -> None:
    async with stream_syslog() as receiver:
        await _syslog_roundtrip(aiohttp_client, settings, sqlite_store, receiver, protocol="tcp")


async def test_syslog_tls(
    sqlite_store: Store, aiohttp_client: Any, settings: CollectorSettings, tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with stream_syslog(context) as receiver:
        await _syslog_roundtrip(aiohttp_client, settings, sqlite_store, receiver, protocol="tls",
                                extra=f"    ca_file: {cert}\n")


async def test_http_exporters_each_get_their_format(
    sqlite_store: Store, aiohttp_client: Any, settings: CollectorSettings, tmp_path: Path
) -> None:
    ocsf_file = tmp_path / "ocsf.jsonl"
    async with http_receiver("/ocsf") as ocsf, http_receiver("/alerts") as sa, \
            http_receiver("/services/collector/event") as hec, http_receiver("/hook") as hook:
        config = with_exporters(settings, f"""
exporters:
  - {{name: ocsf-http, type: ocsf, url: "{ocsf.url}", events: [alerts]}}
  - {{name: ocsf-file, type: ocsf, file: "{ocsf_file}", events: [alerts]}}
  - {{name: defender, type: security_alert, url: "{sa.url}", events: [alerts], headers: {{X-Key: k1}}}}
  - {{name: splunk, type: splunk_hec, url: "{hec.url}", token: hec-token, batch_size: 50, events: [alerts]}}
  - {{name: hook, type: webhook, url: "{hook.url}", secret: hook-secret, events: [alerts]}}
""")
        client = await start(aiohttp_client, config, sqlite_store)
        await ingest(client, alerts(10))  # one transaction: the dispatchers find all ten at once
        expected = await alert_ids(client)
        await ocsf.wait_until(lambda: len(json_bodies(ocsf.requests)) >= 10)
        await sa.wait_until(lambda: len(json_bodies(sa.requests)) >= 10)
        await hec.wait_until(lambda: len(hec.requests) >= 1)
        await hook.wait_until(lambda: len(hook.requests) >= 10)

        assert {r["finding_info"]["uid"] for r in json_bodies(ocsf.requests)} == expected
        assert all(r["class_uid"] == 2004 for r in json_bodies(ocsf.requests))
        assert {r["SystemAlertId"] for r in json_bodies(sa.requests)} == expected
        assert all(h["X-Key"] == "k1" for h, _ in sa.requests)

        assert len(hec.requests) == 1  # batched into one POST
        headers, body = hec.requests[0]
        assert headers["Authorization"] == "Splunk hec-token"
        events = [json.loads(line) for line in body.decode().splitlines()]
        assert {e["event"]["alert"]["id"] for e in events} == expected

        for headers, body in hook.requests:
            assert webhook.verify(b"hook-secret", body, headers["X-Apiward-Signature"])
            assert json.loads(body)["sent_at"] == int(headers["X-Apiward-Timestamp"])
        assert {json.loads(b)["alert"]["id"] for _, b in hook.requests} == expected

    async with asyncio.timeout(10):
        while len(ocsf_file.read_text().splitlines()) < 10 if ocsf_file.exists() else True:
            await asyncio.sleep(0.05)
    assert {json.loads(line)["finding_info"]["uid"] for line in ocsf_file.read_text().splitlines()} == expected


async def test_a_receiver_that_fails_for_a_while_gets_every_alert_exactly_once(
    sqlite_store: Store, aiohttp_client: Any, settings: CollectorSettings
) -> None:
    async with http_receiver() as receiver:
        down_until = time.monotonic() + 1.5
        receiver.respond = lambda n: 503 if time.monotonic() < down_until else 200
        config = with_exporters(settings, f"""
exporters:
  - {{name: sa, type: security_alert, url: "{receiver.url}", batch_size: 7, events: [alerts]}}
""")
        client = await start(aiohttp_client, config, sqlite_store)
        for start_at in range(0, 40, 8):  # 5 batches of 8 new alerts while the receiver is down
            await ingest(client, alerts(8, prefix=f"10.{start_at}.0."))
        expected = await alert_ids(client)
        assert len(expected) == 40
        await receiver.wait_until(lambda: len(json_bodies(receiver.requests)) >= 40, timeout=20)
        await asyncio.sleep(0.3)  # anything extra would arrive now
        received = [r["SystemAlertId"] for r in json_bodies(receiver.requests)]
        assert len(set(received)) == 40 and set(received) == expected  # after de-duplication: each once
        assert len(received) == 40  # and in this outage no duplicate was even sent
        assert receiver.attempts > len(receiver.requests)  # there really was an outage
        await wait_metric(client, "apiward_export_sent_total", "sa", 40)
        assert await metric(client, "apiward_export_retried_total", "sa") > 0
        assert await metric(client, "apiward_export_dead_lettered_total", "sa") == 0


async def test_syslog_tcp_receiver_restart(
    sqlite_store: Store, aiohttp_client: Any, settings: CollectorSettings
) -> None:
    async with stream_syslog() as first:
        port = first.port
        config = with_exporters(settings, f"""
exporters:
  - {{name: siem, type: syslog, protocol: tcp, host: 127.0.0.1, port: {port}, events: [alerts]}}
""")
        client = await start(aiohttp_client, config, sqlite_store)
        await ingest(client, alerts(2, prefix="10.1.0."))
        await first.wait_for(2)
    # The receiver is gone (connection closed, port refusing): these wait in the outbox.
    await ingest(client, alerts(3, prefix="10.2.0."))
    await asyncio.sleep(0.5)
    assert await metric(client, "apiward_export_retried_total", "siem") > 0
    async with stream_syslog(port=port) as second:
        messages = await second.wait_for(3)
        ids = {_cef_of(m)[1]["externalId"] for m in messages} | {_cef_of(m)[1]["externalId"] for m in first.messages}
        assert ids == await alert_ids(client)


async def test_dead_letter_after_the_last_attempt(
    sqlite_store: Store, aiohttp_client: Any, settings: CollectorSettings
) -> None:
    async with http_receiver() as receiver:
        receiver.respond = lambda n: 500
        config = with_exporters(settings, f"""
exporters:
  - {{name: broken, type: ocsf, url: "{receiver.url}", max_attempts: 3, batch_size: 10, events: [alerts]}}
""")
        client = await start(aiohttp_client, config, sqlite_store)
        await ingest(client, alerts(4))
        await wait_metric(client, "apiward_export_dead_lettered_total", "broken", 4)
        assert receiver.attempts == 3  # one batch, three attempts
        assert await metric(client, "apiward_export_retried_total", "broken") == 8  # 4 rows x 2 retries
        assert await metric(client, "apiward_export_sent_total", "broken") == 0
        await wait_metric(client, "apiward_export_dead_letter_rows", "broken", 4)
        assert await metric(client, "apiward_export_queued", "broken") == 0


async def test_a_black_holed_exporter_never_slows_ingest_or_the_api(
    sqlite_store: Store, aiohttp_client: Any, settings: CollectorSettings
) -> None:
    async with http_receiver() as receiver:
        receiver.hang = True  # accepts the request and never answers
        config = with_exporters(settings, f"""
exporters:
  - {{name: hole, type: webhook, url: "{receiver.url}", secret: x, timeout_seconds: 5, events: [alerts]}}
  - {{name: hole2, type: security_alert, url: "{receiver.url}", timeout_seconds: 5, events: [alerts]}}
""")
        client: Client = await start(aiohttp_client, config, sqlite_store)
        latencies = []
        for i in range(20):
            started = time.perf_counter()
            await ingest(client, alerts(3, prefix=f"10.9.{i}."))
            resp = await client.get("/api/v1/alerts", headers=bearer(Role.READ))
            assert resp.status == 200
            latencies.append(time.perf_counter() - started)
        assert receiver.attempts >= 1  # the dispatchers really are stuck in the black hole
        latencies.sort()
        # A send blocks for its 5 s timeout; ingest and reads never wait for it: had one of the 20
        # rounds waited for a send, it would have taken at least 5 s. Bounded well below that, not
        # by an absolute speed (the host's speed is not what this test is about).
        assert latencies[-1] < 2.5, latencies
