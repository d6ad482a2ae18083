"""The exporters file (``--exporters FILE`` / ``APIWARD_EXPORTERS_FILE``), validated at start-up.

Shape (every error names the file and line)::

    version: 1
    delivery:                      # defaults for every exporter; each exporter may override them
      max_attempts: 12             # then the row is dead-lettered
      dead_letter_days: 30         # dead-lettered rows older than this are deleted (requeue before)
      backoff_initial_seconds: 1   # doubled per attempt, capped at backoff_max_seconds, +-20% jitter
      backoff_max_seconds: 300
    exporters:
      - name: sentinel             # [A-Za-z0-9_.-], unique; the label on /metrics
        type: syslog               # syslog (CEF) | ocsf | security_alert | splunk_hec | webhook
        min_severity: medium       # informational | low | medium | high
        types: ["API_*", "SIG_*"]  # globs over alert type ids; default all
        events: [alerts, recommendations]
        ...                        # the type's own keys, see _TYPE_KEYS

Secrets come from the environment (``token_env``, ``secret_env``) or the file (``token``, ``secret``).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

import yaml

from collector.yamlnodes import Doc, YamlFileError, read_text

SEVERITY_RANK = {"informational": 0, "low": 1, "medium": 2, "high": 3}
TYPES = ("syslog", "ocsf", "security_alert", "splunk_hec", "webhook")
EVENTS = ("alerts", "recommendations")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_COMMON = {"name", "type", "min_severity", "types", "events", "batch_size", "timeout_seconds", "max_attempts",
           "backoff_initial_seconds", "backoff_max_seconds", "dead_letter_days"}
_TLS = {"ca_file", "cert_file", "key_file", "verify"}
_TYPE_KEYS: dict[str, set[str]] = {
    "syslog": {"protocol", "host", "port", "facility", "hostname", "server_name"} | _TLS,
    "ocsf": {"url", "file", "headers"} | _TLS,
    "security_alert": {"url", "file", "headers"} | _TLS,
    "splunk_hec": {"url", "token", "token_env", "index", "sourcetype"} | _TLS,
    "webhook": {"url", "secret", "secret_env", "headers"} | _TLS,
}
_DEFAULT_BATCH = {"syslog": 100, "ocsf": 100, "security_alert": 100, "splunk_hec": 100, "webhook": 1}
_DELIVERY_KEYS = {"max_attempts", "backoff_initial_seconds", "backoff_max_seconds", "poll_seconds", "lease_seconds",
                  "dead_letter_days"}


class ExportConfigError(YamlFileError):
    """The exporters file is invalid (``FILE:LINE: problem``)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    max_attempts: int = 12
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    poll: float = 1.0  # how often an idle dispatcher looks for due rows (ingest also wakes it)
    lease: float = 60.0  # how long a claimed row is ours; longer than any send may take
    dead_letter_days: float = 30.0  # dead-lettered rows older than this are deleted: the outbox stays bounded


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    name: str
    type: str
    min_severity: str = "informational"
    types: tuple[str, ...] = ()  # globs; empty = every type
    events: tuple[str, ...] = EVENTS
    batch_size: int = 100
    timeout: float = 10.0
    delivery: Delivery = field(default_factory=Delivery)
    # syslog
    protocol: str = "tcp"
    host: str = ""
    port: int = 0
    facility: str = "authpriv"
    hostname: str = ""
    server_name: str | None = None
    # HTTP and file
    url: str | None = None
    file: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    token: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    index: str | None = None
    sourcetype: str = "apiward:alert"
    # TLS
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    def accepts(self, kind: str, type_: str, severity: str) -> bool:
        if f"{kind}s" not in self.events:
            return False
        if SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK[self.min_severity]:
            return False
        # Type globs filter alerts; a recommendation has no alert type.
        return kind != "alert" or not self.types or any(fnmatchcase(type_, g) for g in self.types)


@dataclass(frozen=True, slots=True)
class ExportConfig:
    exporters: tuple[ExporterConfig, ...] = ()

    def routes(self, kind: str, type_: str, severity: str) -> list[str]:
        return [e.name for e in self.exporters if e.accepts(kind, type_, severity)]

    def select(self, names: Sequence[str] | None) -> tuple[ExporterConfig, ...]:
        if not names:
            return self.exporters
        known = {e.name for e in self.exporters}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ExportConfigError(f"unknown exporter(s): {', '.join(unknown)} (configured: {', '.join(known)})")
        return tuple(e for e in self.exporters if e.name in names)


def load(path: str, environ: Mapping[str, str] | None = None) -> ExportConfig:
    return parse(read_text(path, ExportConfigError), path, os.environ if environ is None else environ)


def parse(text: str, source: str, environ: Mapping[str, str]) -> ExportConfig:
    doc = Doc(text, source, ExportConfigError)
    if doc.root is None:
        return ExportConfig()
    top = doc.mapping(doc.root, "the file", {"version", "delivery", "exporters"})
    doc.version_1(top)
    defaults = _delivery(doc, top["delivery"], Delivery()) if "delivery" in top else Delivery()
    out: list[ExporterConfig] = []
    for node in doc.sequence(top.get("exporters"), "exporters"):
        exporter = _exporter(doc, node, defaults, environ)
        if any(e.name == exporter.name for e in out):
            raise doc.fail(node, f"duplicate exporter name {exporter.name!r}")
        out.append(exporter)
    return ExportConfig(tuple(out))


def _delivery(doc: Doc, node: yaml.Node, base: Delivery) -> Delivery:
    fields = doc.mapping(node, "delivery", _DELIVERY_KEYS)
    return _delivery_fields(doc, fields, base)


def _delivery_fields(doc: Doc, fields: dict[str, yaml.Node], base: Delivery) -> Delivery:
    d = base
    if "max_attempts" in fields:
        d = replace(d, max_attempts=doc.integer(fields["max_attempts"], "max_attempts", 1, 1000))
    if "backoff_initial_seconds" in fields:
        d = replace(d, backoff_initial=doc.number(fields["backoff_initial_seconds"], "backoff_initial_seconds",
                                                  0.001, 3600))
    if "backoff_max_seconds" in fields:
        d = replace(d, backoff_max=doc.number(fields["backoff_max_seconds"], "backoff_max_seconds", 0.001, 86400))
    if "poll_seconds" in fields:
        d = replace(d, poll=doc.number(fields["poll_seconds"], "poll_seconds", 0.01, 60))
    if "lease_seconds" in fields:
        d = replace(d, lease=doc.number(fields["lease_seconds"], "lease_seconds", 1, 3600))
    if "dead_letter_days" in fields:
        d = replace(d, dead_letter_days=doc.number(fields["dead_letter_days"], "dead_letter_days", 0.001, 3650))
    return d


def _exporter(doc: Doc, node: yaml.Node, defaults: Delivery, environ: Mapping[str, str]) -> ExporterConfig:
    if not isinstance(node, yaml.MappingNode):
        raise doc.fail(node, "each exporter must be a mapping")
    type_node = next((v for k, v in node.value if k.value == "type"), None)
    if type_node is None:
        raise doc.fail(node, f"an exporter needs a 'type' ({' | '.join(TYPES)})")
    kind = doc.value(type_node)
    if kind not in TYPES:
        raise doc.fail(type_node, f"type must be one of {' | '.join(TYPES)}, not {kind!r}")
    f = doc.mapping(node, f"a {kind} exporter", _COMMON | _TYPE_KEYS[kind])
    if "name" not in f:
        raise doc.fail(node, "an exporter needs a 'name'")
    name = doc.string(f["name"], "name", max_len=64)
    if not _NAME.fullmatch(name):
        raise doc.fail(f["name"], "name may only use letters, digits, '_', '.' and '-'")

    def opt_str(key: str) -> str | None:
        return doc.string(f[key], key) if key in f else None

    values: dict[str, Any] = {"name": name, "type": kind, "batch_size": _DEFAULT_BATCH[kind]}
    if "min_severity" in f:
        severity = doc.value(f["min_severity"])
        if severity not in SEVERITY_RANK:
            raise doc.fail(f["min_severity"], f"min_severity must be one of {', '.join(SEVERITY_RANK)}")
        values["min_severity"] = severity
    if "types" in f:
        values["types"] = doc.strings(f["types"], "types")
    if "events" in f:
        events = doc.strings(f["events"], "events")
        if not events or set(events) - set(EVENTS):
            raise doc.fail(f["events"], f"events must be a list of {', '.join(EVENTS)}")
        values["events"] = events
    if "batch_size" in f:
        values["batch_size"] = doc.integer(f["batch_size"], "batch_size", 1, 1000)
    if "timeout_seconds" in f:
        values["timeout"] = doc.number(f["timeout_seconds"], "timeout_seconds", 0.1, 300)
    values["delivery"] = _delivery_fields(doc, f, defaults)
    for key in ("ca_file", "cert_file", "key_file", "index", "sourcetype", "server_name"):
        if key in f:
            values[key] = opt_str(key)
    if "verify" in f:
        values["verify"] = doc.boolean(f["verify"], "verify")
    if "headers" in f:
        headers = doc.mapping(f["headers"], "headers", set(_header_names(f["headers"])))
        values["headers"] = tuple((k, doc.string(v, f"header {k}")) for k, v in headers.items())
    if kind == "syslog":
        _syslog(doc, node, f, values)
    else:
        _http(doc, node, f, values, kind=kind, environ=environ)
    return ExporterConfig(**values)


def _header_names(node: yaml.Node) -> list[str]:
    return [str(k.value) for k, _ in node.value] if isinstance(node, yaml.MappingNode) else []


def _syslog(doc: Doc, node: yaml.Node, f: dict[str, yaml.Node], values: dict[str, Any]) -> None:
    from collector.export.syslog import FACILITIES

    protocol = doc.value(f["protocol"]) if "protocol" in f else "tcp"
    if protocol not in ("udp", "tcp", "tls"):
        raise doc.fail(f.get("protocol"), "protocol must be udp, tcp or tls")
    if "host" not in f:
        raise doc.fail(node, "a syslog exporter needs a 'host'")
    values["protocol"] = protocol
    values["host"] = doc.string(f["host"], "host", max_len=255)
    values["port"] = doc.integer(f["port"], "port", 1, 65535) if "port" in f else (6514 if protocol == "tls" else 514)
    if "facility" in f:
        facility = doc.value(f["facility"])
        if facility not in FACILITIES:
            raise doc.fail(f["facility"], f"facility must be one of {', '.join(FACILITIES)}")
        values["facility"] = facility
    values["hostname"] = doc.string(f["hostname"], "hostname", max_len=255) if "hostname" in f else socket.gethostname()
    if protocol != "tls" and any(k in f for k in _TLS):
        raise doc.fail(node, "ca_file, cert_file, key_file and verify only apply to protocol tls")


def _http(
    doc: Doc, node: yaml.Node, f: dict[str, yaml.Node], values: dict[str, Any], *, kind: str,
    environ: Mapping[str, str],
) -> None:
    has_file = "file" in f
    if has_file == ("url" in f) and kind in ("ocsf", "security_alert"):
        raise doc.fail(node, f"a {kind} exporter needs exactly one of 'url' or 'file'")
    if kind in ("splunk_hec", "webhook") and "url" not in f:
        raise doc.fail(node, f"a {kind} exporter needs a 'url'")
    if "url" in f:
        url = doc.string(f["url"], "url")
        if not url.startswith(("http://", "https://")):
            raise doc.fail(f["url"], "url must start with http:// or https://")
        values["url"] = url
    if has_file:
        values["file"] = doc.string(f["file"], "file")
    secret_key = {"splunk_hec": "token", "webhook": "secret"}.get(kind)
    if secret_key is None:
        return
    env_key = f"{secret_key}_env"
    if (secret_key in f) == (env_key in f):
        raise doc.fail(node, f"a {kind} exporter needs exactly one of '{secret_key}' or '{env_key}'")
    if env_key in f:
        variable = doc.string(f[env_key], env_key, max_len=200)
        secret = environ.get(variable, "")
        if not secret:
            raise doc.fail(f[env_key], f"environment variable {variable} is not set")
    else:
        secret = doc.string(f[secret_key], secret_key)
    values[secret_key] = secret


__all__ = ["EVENTS", "TYPES", "Delivery", "ExportConfig", "ExportConfigError", "ExporterConfig", "load", "parse"]
