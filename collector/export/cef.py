"""ArcSight CEF, mapped so Microsoft Sentinel's CommonSecurityLog columns fill (pure functions).

Header fields escape ``\\`` and ``|`` and may not contain line breaks; extension values escape ``\\``
and ``=`` and encode line breaks as ``\\n`` / ``\\r``. Keys are fixed ASCII names.

CommonSecurityLog columns filled: DeviceVendor, DeviceProduct, DeviceVersion, DeviceEventClassID
(the alert type id), Activity (name), LogSeverity, ReceiptTime (rt), StartTime, EndTime, EventCount
(cnt), SourceIP (src), SourceUserName (suser: the hashed principal), DestinationHostName (dhost: the
API), RequestURL (request: the path template), RequestMethod, DeviceAction (act: the alert status),
DeviceEventCategory (cat: MITRE tactics), Reason (the export event), ExternalID (externalId: the alert
id), DeviceName (dvchost), Message (msg), DeviceCustomString1..6 with their labels.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from collector.export.records import ExportRecord, Source, epoch_ms

CEF_SEVERITY = {"high": 8, "medium": 5, "low": 3, "informational": 1}
MAX_CUSTOM_STRING = 1023  # ArcSight's limit for csN values; Sentinel keeps up to 4000


def escape_header(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def escape_extension(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def _clip(text: str, limit: int = MAX_CUSTOM_STRING) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ip(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value))) if value else None
    except ValueError:
        return None


def _extension(pairs: list[tuple[str, object | None]]) -> str:
    return " ".join(f"{k}={escape_extension(v)}" for k, v in pairs if v is not None and v != "")


def _line(source: Source, signature: str, name: str, severity: str, pairs: list[tuple[str, object | None]]) -> str:
    header = "|".join(
        escape_header(v)
        for v in (source.vendor, source.product, source.version, signature, name, CEF_SEVERITY.get(severity, 5))
    )
    return f"CEF:0|{header}|{_extension(pairs)}"


def render(record: ExportRecord, source: Source) -> str:
    """One CEF line (no syslog header) for an export record."""
    if record.alert is not None:
        return _alert(record, record.alert, source)
    assert record.recommendation is not None
    return _recommendation(record, record.recommendation, source)


def _alert(record: ExportRecord, a: dict[str, Any], source: Source) -> str:
    endpoint, client = a["endpoint"], a["client"]
    evidence = json.dumps(a["evidence"], sort_keys=True, separators=(",", ":"), default=str)
    pairs: list[tuple[str, object | None]] = [
        ("rt", epoch_ms(record.at)),
        ("start", epoch_ms(a["first_seen"])),
        ("end", epoch_ms(a["last_seen"])),
        ("cnt", a["count"]),
        ("src", _ip(client["ip"])),
        ("suser", client["principal"]),
        ("dhost", endpoint["api"]),
        ("request", endpoint["path"]),
        ("requestMethod", endpoint["method"]),
        ("act", a["status"]),
        ("cat", ",".join(a["mitre_tactics"])),
        ("reason", record.event),
        ("externalId", a["id"]),
        ("dvchost", source.hostname),
        ("msg", f"{a['title']} ({a['count']} on {endpoint['method']} {endpoint['path']} of {endpoint['api']})"),
        ("cs1Label", "OWASP"),
        ("cs1", ",".join(a["owasp"])),
        ("cs2Label", "Remediation"),
        ("cs2", _clip(" ".join(a["remediation_steps"]))),
        ("cs3Label", "MitreTacticIds"),
        ("cs3", ",".join(a["mitre_tactic_ids"])),
        ("cs4Label", "Evidence"),
        ("cs4", _clip(evidence)),
        ("cs5Label", "RuleIds"),
        ("cs5", ",".join(a["rule_ids"])),
        ("cs6Label", "AlertId"),
        ("cs6", a["id"]),
    ]
    return _line(source, a["type"], a["title"], a["severity"], pairs)


def _recommendation(record: ExportRecord, r: dict[str, Any], source: Source) -> str:
    affected = [f"{e['method']} {e['path']} ({e['api']})" for e in r.get("affected_endpoints", [])]
    pairs: list[tuple[str, object | None]] = [
        ("rt", epoch_ms(record.at)),
        ("cnt", r.get("affected_count", len(affected))),
        ("act", r["status"]),
        ("cat", "Posture"),
        ("reason", record.event),
        ("externalId", r["id"]),
        ("dvchost", source.hostname),
        ("msg", r["description"]),
        ("cs2Label", "Remediation"),
        ("cs2", _clip(" ".join(r["remediation"]))),
        ("cs4Label", "AffectedEndpoints"),
        ("cs4", _clip("; ".join(affected))),
        ("cs6Label", "RecommendationId"),
        ("cs6", r["id"]),
    ]
    return _line(source, r["id"], r["title"], r["severity"], pairs)


__all__ = ["CEF_SEVERITY", "escape_extension", "escape_header", "render"]
