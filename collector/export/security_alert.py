"""JSON shaped like the commercial plan's SecurityAlert record (Sentinel's ``SecurityAlert`` table),
each record at most 32 KB: the evidence is cut first (and marked), then long free-text fields.
"""

from __future__ import annotations

import json
from typing import Any

from collector.export.records import ExportRecord, Source

MAX_RECORD_BYTES = 32 * 1024
STATUS = {"active": "New", "resolved": "Resolved", "dismissed": "Dismissed", "suppressed": "Dismissed"}


def intent(tactic: str) -> str:
    """``Initial access`` -> ``InitialAccess``, ``Pre-attack`` -> ``PreAttack`` (SecurityAlert's spelling)."""
    return tactic.replace("-", " ").title().replace(" ", "")


def size(record: dict[str, Any]) -> int:
    return len(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode())


def render(record: ExportRecord, source: Source) -> dict[str, Any]:
    if record.alert is not None:
        return _alert(record, record.alert, source)
    assert record.recommendation is not None
    return _recommendation(record, record.recommendation, source)


def _common(record: ExportRecord, source: Source) -> dict[str, Any]:
    return {
        "ProviderName": source.product,
        "VendorName": source.vendor,
        "ProductName": source.product,
        "ProductComponentName": "API security",
        "TimeGenerated": record.at.isoformat().replace("+00:00", "Z"),
    }


def _alert(record: ExportRecord, a: dict[str, Any], source: Source) -> dict[str, Any]:
    endpoint, client = a["endpoint"], a["client"]
    entities: list[dict[str, Any]] = []
    if client["ip"]:
        entities.append({"$id": str(len(entities) + 1), "Type": "ip", "Address": client["ip"]})
    entities.append({"$id": str(len(entities) + 1), "Type": "host", "HostName": endpoint["api"]})
    if client["principal"]:
        entities.append({"$id": str(len(entities) + 1), "Type": "account", "Name": client["principal"]})
    intents = ",".join(intent(t) for t in a["mitre_tactics"]) or "Unknown"
    evidence = json.dumps(a["evidence"], sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    title = a["title"][:512]
    out: dict[str, Any] = {
        "AlertName": title,
        "DisplayName": title,
        "AlertType": a["type"],
        "Severity": a["severity"].capitalize(),
        "Description": f"{title} ({a['count']} on {endpoint['method']} {endpoint['path']} of {endpoint['api']})",
        "Status": STATUS.get(a["status"], "New"),
        "StartTime": a["first_seen"],
        "EndTime": a["last_seen"],
        "SystemAlertId": a["id"],
        "VendorOriginalId": a["id"],
        "CompromisedEntity": endpoint["api"],
        "Intent": intents,
        "Tactics": intents,
        **_common(record, source),
        "Entities": entities,
        "ExtendedProperties": {
            "Event": record.event,
            "ChangedBy": record.by,
            "API": endpoint["api"],
            "Endpoint": f"{endpoint['method']} {endpoint['path']}",
            "EndpointId": endpoint["id"],
            "ClientIP": client["ip"] or "",
            "Count": str(a["count"]),
            "OWASP": ",".join(a["owasp"]),
            "MitreTacticIds": ",".join(a["mitre_tactic_ids"]),
            "RuleIds": ",".join(a["rule_ids"])[:2048],
            "Evidence": evidence,
        },
        "RemediationSteps": [step[:1024] for step in a["remediation_steps"]],
    }
    return fit(out)


def fit(record: dict[str, Any], limit: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """Cut the evidence until the record is at most ``limit`` bytes (halving keeps this to ~20 steps)."""
    props = record["ExtendedProperties"]
    while size(record) > limit and props.get("Evidence"):
        text = props["Evidence"]
        props["Evidence"] = text[: len(text) // 2]
        props["EvidenceTruncated"] = "true"
    while size(record) > limit and len(record["Description"]) > 64:
        record["Description"] = record["Description"][: len(record["Description"]) // 2]
    return record


def _recommendation(record: ExportRecord, r: dict[str, Any], source: Source) -> dict[str, Any]:
    affected = r.get("affected_endpoints", [])
    out: dict[str, Any] = {
        "AlertName": r["title"],
        "DisplayName": r["title"],
        "AlertType": f"Recommendation_{r['id']}",
        "Severity": r["severity"].capitalize(),
        "Description": r["description"],
        "Status": "New",
        "StartTime": record.at.isoformat().replace("+00:00", "Z"),
        "EndTime": record.at.isoformat().replace("+00:00", "Z"),
        "SystemAlertId": f"recommendation:{r['id']}",
        "VendorOriginalId": r["id"],
        "Intent": "Unknown",
        **_common(record, source),
        "Entities": [
            {"$id": str(i + 1), "Type": "host", "HostName": name}
            for i, name in enumerate(sorted({e["api"] for e in affected}))
        ],
        "ExtendedProperties": {
            "Event": record.event,
            "RecommendationStatus": r["status"],
            "AffectedEndpoints": str(r.get("affected_count", len(affected))),
            "Evidence": json.dumps([f"{e['method']} {e['path']} ({e['api']})" for e in affected]),
        },
        "RemediationSteps": list(r["remediation"]),
    }
    return fit(out)


__all__ = ["MAX_RECORD_BYTES", "STATUS", "fit", "intent", "render", "size"]
