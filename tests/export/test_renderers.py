"""Every renderer against golden files (``UPDATE_GOLDEN=1`` rewrites them after a reviewed change)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from collector.export import cef, ocsf, security_alert, splunk, syslog, webhook
from collector.export.records import ExportRecord
from tests.export.conftest import AT, SOURCE, alert_record, recommendation_record
from tests.export.receivers import parse_cef

GOLDEN = Path(__file__).with_name("golden")
RECORDS = {
    "alert": alert_record(),
    "alert_resolved": alert_record("alert.status_changed", status="resolved", status_by="admin-1", status_at=AT),
    "alert_no_client": alert_record(client_ip="", principal="", type="API_SpikeInAPITraffic", severity="medium",
                                    title="Spike in traffic", evidence={}, rule_ids=[]),
    "recommendation": recommendation_record(),
}


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("name", RECORDS)
def test_cef_over_syslog_golden(name: str) -> None:
    record = RECORDS[name]
    line = cef.render(record, SOURCE)
    framed = syslog.octet_frame(syslog.message(line, at=record.at, hostname=SOURCE.hostname,
                                               severity=record.severity, msgid=record.event.split(".")[0]))
    _golden(f"cef_{name}.txt", framed.decode() + "\n")


@pytest.mark.parametrize("name", RECORDS)
def test_ocsf_golden(name: str) -> None:
    _golden(f"ocsf_{name}.json", _json(ocsf.render(RECORDS[name], SOURCE)))


@pytest.mark.parametrize("name", RECORDS)
def test_security_alert_golden(name: str) -> None:
    _golden(f"security_alert_{name}.json", _json(security_alert.render(RECORDS[name], SOURCE)))


@pytest.mark.parametrize("name", RECORDS)
def test_splunk_hec_golden(name: str) -> None:
    event = splunk.render(RECORDS[name], SOURCE, sourcetype="apiward:alert", index="security")
    _golden(f"splunk_{name}.json", _json(event))


@pytest.mark.parametrize("name", RECORDS)
def test_webhook_golden(name: str) -> None:
    raw = webhook.body(RECORDS[name], sent_at=1773500966)
    headers = webhook.headers(RECORDS[name], b"s3cret", raw, 1773500966, "42")
    _golden(f"webhook_{name}.txt", _json(headers) + raw.decode() + "\n")


def test_cef_header_and_extension_escaping_round_trips() -> None:
    record = alert_record()
    header, ext = parse_cef(cef.render(record, SOURCE))
    assert header[0] == "0" and header[4] == "SIG_SQLI" and header[6] == "8"
    # Header: pipes and backslashes escaped, the newline flattened to a space (not allowed there).
    assert header[5] == "SQL injection | tautology = true \\ on line two"
    evidence = json.loads(ext["cs4"])
    assert evidence["excerpt"] == "1' OR '1'='1 | x=y \\ z\r\nnext"  # = \ and CR LF survive
    assert ext["externalId"] == ext["cs6"] == "5f1d2c3b4a5968778695a4b3"
    assert ext["msg"].startswith("SQL injection | tautology = true \\ on\nline two (12 on GET /users/{id}")


def test_cef_fills_the_common_security_log_columns() -> None:
    header, ext = parse_cef(cef.render(alert_record(), SOURCE))
    assert header[:4] == ["0", "apiward", "apiward", "0.1.0"]
    expected = {
        "rt": "1773500966535", "start": "1773500400000", "end": "1773500940000", "cnt": "12",
        "src": "203.0.113.9", "suser": "p-7c1e", "dhost": "shop", "request": "/users/{id}", "requestMethod": "GET",
        "act": "active", "cat": "Initial access", "reason": "alert.created", "dvchost": "collector-1",
        "cs1Label": "OWASP", "cs1": "API8:2023", "cs2Label": "Remediation", "cs3Label": "MitreTacticIds",
        "cs3": "TA0001", "cs4Label": "Evidence", "cs5Label": "RuleIds", "cs5": "SQLI-002,SQLI-003",
        "cs6Label": "AlertId",
    }
    assert {k: ext[k] for k in expected} == expected
    assert ext["cs2"].startswith("Use parameterised queries")


def test_cef_skips_a_client_ip_that_is_not_an_address() -> None:
    _, ext = parse_cef(cef.render(alert_record(client_ip="unknown"), SOURCE))
    assert "src" not in ext


def test_syslog_header_is_rfc5424() -> None:
    msg = syslog.message("CEF:0|x", at=AT, hostname="host name\u00e9", severity="high", msgid="alert")
    assert msg == b"<83>1 2026-03-14T15:09:26.535Z hostname apiward - alert - CEF:0|x"
    assert syslog.octet_frame(b"abc\xc3\xa9") == b"5 abc\xc3\xa9"  # counted in bytes, not characters


def test_security_alert_stays_under_32_kib_with_huge_evidence() -> None:
    huge = {"excerpt": "\u00e9\"" * 40_000, "values": list(range(5000))}
    rendered = security_alert.render(alert_record(evidence=huge), SOURCE)
    assert security_alert.size(rendered) <= security_alert.MAX_RECORD_BYTES
    assert rendered["ExtendedProperties"]["EvidenceTruncated"] == "true"
    assert rendered["AlertType"] == "SIG_SQLI" and rendered["SystemAlertId"] == "5f1d2c3b4a5968778695a4b3"
    small = security_alert.render(alert_record(), SOURCE)
    assert "EvidenceTruncated" not in small["ExtendedProperties"]


def test_security_alert_intents_use_the_commercial_spelling() -> None:
    assert security_alert.intent("Initial access") == "InitialAccess"
    assert security_alert.intent("Pre-attack") == "PreAttack"


def test_ocsf_detection_finding_required_fields() -> None:
    out = ocsf.render(alert_record(), SOURCE)
    assert (out["class_uid"], out["category_uid"], out["type_uid"]) == (2004, 2, 200401)
    assert out["severity_id"] == 4 and out["finding_info"]["uid"] == "5f1d2c3b4a5968778695a4b3"
    assert out["api"]["operation"] == "GET /users/{id}" and out["http_request"]["http_method"] == "GET"
    assert {o["name"] for o in out["observables"]} >= {"src_endpoint.ip", "actor.user.uid"}
    closed = ocsf.render(alert_record("alert.status_changed", status="resolved"), SOURCE)
    assert closed["activity_id"] == 3 and closed["status_id"] == 4


def test_webhook_signature_is_hmac_of_the_body() -> None:
    record: ExportRecord = alert_record()
    raw = webhook.body(record, 1773500966)
    headers = webhook.headers(record, b"s3cret", raw, 1773500966, "7")
    assert webhook.verify(b"s3cret", raw, headers["X-Apiward-Signature"])
    assert not webhook.verify(b"other", raw, headers["X-Apiward-Signature"])
    assert json.loads(raw)["sent_at"] == int(headers["X-Apiward-Timestamp"])


def test_splunk_batch_is_concatenated_events() -> None:
    events = [splunk.render(r, SOURCE) for r in RECORDS.values()]
    body = splunk.batch_body(events).decode().splitlines()
    assert [json.loads(line)["event"]["event"] for line in body] == [r.event for r in RECORDS.values()]
    assert splunk.authorization("abc") == "Splunk abc"
