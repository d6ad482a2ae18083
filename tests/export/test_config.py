"""The exporters file and the suppressions file: what they accept, and errors that name the line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector import suppressions as supp
from collector.export.config import ExportConfigError, load, parse
from collector.settings import ConfigError, load_settings

GOOD = """
version: 1
delivery:
  max_attempts: 5
  backoff_initial_seconds: 0.5
  dead_letter_days: 10
exporters:
  - name: sentinel
    type: syslog
    protocol: tls
    host: siem.example.com
    ca_file: /etc/ssl/siem-ca.pem
    min_severity: medium
    types: ["API_*", "SIG_*"]
  - name: lake
    type: ocsf
    file: /var/log/apiward/ocsf.jsonl
    events: [alerts]
  - name: splunk
    type: splunk_hec
    url: https://splunk.example.com:8088/services/collector/event
    token_env: SPLUNK_HEC_TOKEN
    index: security
    max_attempts: 20
    dead_letter_days: 2
  - name: hook
    type: webhook
    url: https://hooks.example.com/apiward
    secret: s3cret-s3cret
"""


def test_a_full_file_parses_with_defaults_and_overrides() -> None:
    config = parse(GOOD, "exporters.yaml", {"SPLUNK_HEC_TOKEN": "tok-123"})
    sentinel, lake, splunk, hook = config.exporters
    assert (sentinel.protocol, sentinel.port, sentinel.min_severity) == ("tls", 6514, "medium")
    assert sentinel.delivery.max_attempts == 5 and sentinel.delivery.backoff_initial == 0.5
    assert splunk.token == "tok-123" and splunk.delivery.max_attempts == 20 and splunk.index == "security"
    assert sentinel.delivery.dead_letter_days == 10 and splunk.delivery.dead_letter_days == 2
    assert "tok-123" not in repr(splunk) and "s3cret" not in repr(hook)  # secrets never printed
    assert lake.file == "/var/log/apiward/ocsf.jsonl" and lake.events == ("alerts",)
    assert hook.batch_size == 1  # one signed POST per event


def test_filters_route_by_severity_type_and_event_kind() -> None:
    config = parse(GOOD, "exporters.yaml", {"SPLUNK_HEC_TOKEN": "t"})
    assert config.routes("alert", "SIG_SQLI", "high") == ["sentinel", "lake", "splunk", "hook"]
    assert config.routes("alert", "SIG_SQLI", "low") == ["lake", "splunk", "hook"]
    assert config.routes("alert", "BOLA_X", "high") == ["lake", "splunk", "hook"]  # sentinel's types
    assert config.routes("recommendation", "authenticate-endpoints", "high") == ["sentinel", "splunk", "hook"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("exporters:\n  - name: a\n    type: carrier-pigeon\n", ":3: type must be one of"),
        ("exporters:\n  - name: a\n    type: syslog\n", ":2: a syslog exporter needs a 'host'"),
        ("exporters:\n  - name: a\n    type: syslog\n    host: h\n    prot: udp\n", ":5: unknown key 'prot'"),
        ("exporters:\n  - name: a\n    type: syslog\n    host: h\n    port: 70000\n", ":5: port must be"),
        ("exporters:\n  - {name: a, type: ocsf, file: x, dead_letter_days: 0}\n", ":2: dead_letter_days must be"),
        ("exporters:\n  - name: a\n    type: ocsf\n", ":2: a ocsf exporter needs exactly one of 'url' or 'file'"),
        ("exporters:\n  - name: a\n    type: webhook\n    url: ftp://x\n    secret: s\n", ":4: url must start"),
        ("exporters:\n  - name: a\n    type: splunk_hec\n    url: http://x\n    token_env: NOPE\n",
         ":5: environment variable NOPE is not set"),
        ("exporters:\n  - {name: a, type: ocsf, file: x}\n  - {name: a, type: ocsf, file: y}\n",
         ":3: duplicate exporter name 'a'"),
        ("exporters:\n  - name: a\n    type: ocsf\n    file: x\n    min_severity: urgent\n", ":5: min_severity"),
        ("exporters: [\n", "invalid YAML"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ExportConfigError) as info:
        parse(text, "exp.yaml", {})
    assert message in str(info.value) and str(info.value).startswith("exp.yaml")


def test_settings_stop_on_a_bad_exporters_file(tmp_path: Path) -> None:
    bad = tmp_path / "exporters.yaml"
    bad.write_text("exporters:\n  - name: a\n    type: syslog\n")
    env = {"APIWARD_ADMIN_TOKENS": "admin-token-0123456789a", "APIWARD_EXPORTERS_FILE": str(bad)}
    with pytest.raises(ConfigError, match=r"exporters.yaml:2: a syslog exporter needs a 'host'"):
        load_settings(environ=env)
    with pytest.raises(ExportConfigError, match="cannot read"):
        load(str(tmp_path / "missing.yaml"))


def test_settings_read_exporters_suppressions_and_window(tmp_path: Path) -> None:
    exporters = tmp_path / "e.yaml"
    exporters.write_text("exporters:\n  - {name: f, type: ocsf, file: out.jsonl}\n")
    rules = tmp_path / "s.yaml"
    rules.write_text("suppressions:\n  - {id: lab, cidrs: [10.0.0.0/8]}\n")
    env = {"APIWARD_ADMIN_TOKENS": "admin-token-0123456789a", "APIWARD_ALERT_GROUP_WINDOW": "3600"}
    settings = load_settings(environ=env, exporters_file=str(exporters), suppressions_file=str(rules))
    assert [e.name for e in settings.exporters.exporters] == ["f"]
    assert [r.id for r in settings.suppressions.rules] == ["lab"]
    assert settings.alert_group_window == 3600


NOW = datetime(2026, 3, 14, tzinfo=UTC)
RULES = """
version: 1
suppressions:
  - id: scanner
    types: ["SIG_*"]
    cidrs: [10.20.0.0/16, "2001:db8::/32"]
  - id: health
    path: ["/health*"]
    method: get
    until: 2026-01-01
  - id: partner
    principals: [p-partner]
    api: ["partner-*"]
"""


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        (supp.AlertKey("SIG_XSS", "shop", "GET", "/a", "10.20.1.2", ""), "scanner"),
        (supp.AlertKey("SIG_XSS", "shop", "GET", "/a", "2001:db8::1", ""), "scanner"),
        (supp.AlertKey("API_SprayInRequests", "shop", "GET", "/a", "10.20.1.2", ""), None),  # type differs
        (supp.AlertKey("SIG_XSS", "shop", "GET", "/a", "", ""), None),  # no client IP: a CIDR cannot vouch
        (supp.AlertKey("API_SprayInRequests", "shop", "GET", "/healthz", "1.2.3.4", ""), None),  # expired
        (supp.AlertKey("API_SpikeInAPITraffic", "partner-api", "POST", "/x", "1.2.3.4", "p-partner"), "partner"),
        (supp.AlertKey("API_SpikeInAPITraffic", "shop", "POST", "/x", "1.2.3.4", "p-partner"), None),
    ],
)
def test_suppression_rules_match(key: supp.AlertKey, rule: str | None) -> None:
    assert supp.parse(RULES, "s.yaml").match(key, NOW) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("suppressions:\n  - id: all\n", ":2: a suppression needs at least one of"),
        ("suppressions:\n  - id: x\n    cidrs: [10.0.0.300/8]\n", ":3: '10.0.0.300/8' is not a network"),
        ("suppressions:\n  - id: x\n    type: [A]\n", ":3: unknown key 'type'"),
        ("suppressions:\n  - id: x\n    path: /a\n    until: soon\n", ":4: until must be a date"),
        ("suppressions:\n  - {id: x, path: /a}\n  - {id: x, path: /b}\n", ":3: duplicate suppression id 'x'"),
    ],
)
def test_suppression_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(supp.SuppressionError) as info:
        supp.parse(text, "s.yaml")
    assert message in str(info.value)


def test_the_shipped_default_file_loads() -> None:
    assert supp.load().rules == ()
