"""OCSF 1.3 records (pure functions): alerts as Detection Finding (class 2004) with the API activity
context (``api``, ``http_request``, ``src_endpoint``, ``actor``) and observables; recommendations that
became unhealthy as Compliance Finding (class 2003).
"""

from __future__ import annotations

import hashlib
from typing import Any

from collector.export.records import ExportRecord, Source, epoch_ms

OCSF_VERSION = "1.3.0"
SEVERITY_ID = {"informational": 1, "low": 2, "medium": 3, "high": 4}
# OCSF finding status: 1 New, 3 Suppressed, 4 Resolved ("dismissed" = an analyst suppressed it).
STATUS_ID = {"active": (1, "New"), "resolved": (4, "Resolved"), "dismissed": (3, "Suppressed"),
             "suppressed": (3, "Suppressed")}
TACTIC_NAMES = {
    "TA0043": "Reconnaissance", "TA0001": "Initial Access", "TA0002": "Execution", "TA0003": "Persistence",
    "TA0004": "Privilege Escalation", "TA0005": "Defense Evasion", "TA0006": "Credential Access",
    "TA0007": "Discovery", "TA0009": "Collection", "TA0010": "Exfiltration", "TA0040": "Impact",
}
OWASP_TOP10 = "https://owasp.org/API-Security/editions/2023/en/0x11-t10/"
DETECTION_FINDING, COMPLIANCE_FINDING = 2004, 2003
_ACTIVITY = {1: "Create", 2: "Update", 3: "Close"}


def _activity(record: ExportRecord, status: str) -> int:
    if record.event.endswith(".created") or record.event == "recommendation.unhealthy":
        return 1
    if record.event == "alert.status_changed" and status in ("resolved", "dismissed"):
        return 3
    return 2


def _metadata(record: ExportRecord, source: Source, code: str) -> dict[str, Any]:
    # The same event delivered twice has the same uid, so a receiver can de-duplicate on it.
    uid = hashlib.sha256(f"{record.subject_id}\x00{record.event}\x00{record.at.isoformat()}".encode()).hexdigest()
    return {
        "version": OCSF_VERSION,
        "product": {"name": source.product, "vendor_name": source.vendor, "version": source.version},
        "uid": uid[:32],
        "correlation_uid": record.subject_id,
        "event_code": code,
        "log_name": "apiward",
        "labels": [record.event],
    }


def _class(class_uid: int, name: str, activity: int) -> dict[str, Any]:
    return {
        "category_uid": 2, "category_name": "Findings", "class_uid": class_uid, "class_name": name,
        "activity_id": activity, "activity_name": _ACTIVITY[activity],
        "type_uid": class_uid * 100 + activity, "type_name": f"{name}: {_ACTIVITY[activity]}",
    }


def render(record: ExportRecord, source: Source) -> dict[str, Any]:
    if record.alert is not None:
        return _detection(record, record.alert, source)
    assert record.recommendation is not None
    return _compliance(record, record.recommendation, source)


def _detection(record: ExportRecord, a: dict[str, Any], source: Source) -> dict[str, Any]:
    endpoint, client = a["endpoint"], a["client"]
    status_id, status = STATUS_ID.get(a["status"], (99, a["status"]))
    operation = f"{endpoint['method']} {endpoint['path']}"
    observables: list[dict[str, Any]] = []
    out: dict[str, Any] = {
        **_class(DETECTION_FINDING, "Detection Finding", _activity(record, a["status"])),
        "severity_id": SEVERITY_ID.get(a["severity"], 0),
        "severity": a["severity"].capitalize(),
        "status_id": status_id,
        "status": status,
        "time": epoch_ms(record.at),
        "start_time": epoch_ms(a["first_seen"]),
        "end_time": epoch_ms(a["last_seen"]),
        "count": a["count"],
        "message": a["title"],
        "is_alert": True,
        "metadata": _metadata(record, source, a["type"]),
        "finding_info": {
            "uid": a["id"],
            "title": a["title"],
            "desc": f"{a['title']} ({a['count']} on {operation} of {endpoint['api']})",
            "types": [a["type"]],
            "first_seen_time": epoch_ms(a["first_seen"]),
            "last_seen_time": epoch_ms(a["last_seen"]),
            "analytic": {"uid": a["type"], "name": a["type"], "type_id": 1, "type": "Rule"},
            "attacks": [
                {"tactic": {"uid": tid, "name": TACTIC_NAMES.get(tid, tid)}, "version": "v15"}
                for tid in a["mitre_tactic_ids"]
            ],
            "related_analytics": [{"uid": r, "type_id": 1, "type": "Rule"} for r in a["rule_ids"]],
        },
        "remediation": {"desc": " ".join(a["remediation_steps"]), "references": [OWASP_TOP10]},
        "api": {"operation": operation, "service": {"name": endpoint["api"], "uid": endpoint["id"]}},
        "http_request": {"http_method": endpoint["method"], "url": {"path": endpoint["path"],
                                                                     "url_string": endpoint["path"]}},
        "evidences": [{"data": a["evidence"]}],
        "observables": observables,
        "unmapped": {"owasp": a["owasp"], "apiward_status": a["status"], "changed_by": record.by},
    }
    if client["ip"]:
        out["src_endpoint"] = {"ip": client["ip"]}
        out["evidences"][0]["src_endpoint"] = {"ip": client["ip"]}
        observables.append({"name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": client["ip"]})
    if client["principal"]:
        out["actor"] = {"user": {"uid": client["principal"]}}
        observables.append({"name": "actor.user.uid", "type_id": 99, "type": "Other", "value": client["principal"]})
    observables.append({"name": "http_request.url.path", "type_id": 6, "type": "URL String",
                        "value": endpoint["path"]})
    return out


def _compliance(record: ExportRecord, r: dict[str, Any], source: Source) -> dict[str, Any]:
    return {
        **_class(COMPLIANCE_FINDING, "Compliance Finding", _activity(record, r["status"])),
        "severity_id": SEVERITY_ID.get(r["severity"], 0),
        "severity": r["severity"].capitalize(),
        "status_id": 1,
        "status": "New",
        "time": epoch_ms(record.at),
        "message": r["title"],
        "metadata": _metadata(record, source, r["id"]),
        "finding_info": {"uid": r["id"], "title": r["title"], "desc": r["description"], "types": ["recommendation"]},
        "compliance": {
            "standards": ["apiward recommendations"], "requirements": [r["id"]],
            "status_id": 3 if r["status"] == "unhealthy" else 1,
            "status": "Fail" if r["status"] == "unhealthy" else "Pass",
        },
        "remediation": {"desc": " ".join(r["remediation"])},
        "resources": [
            {"uid": e["id"], "name": f"{e['method']} {e['path']}", "type": "API endpoint", "group": {"name": e["api"]}}
            for e in r.get("affected_endpoints", [])
        ],
        "count": r.get("affected_count", len(r.get("affected_endpoints", []))),
    }


__all__ = ["COMPLIANCE_FINDING", "DETECTION_FINDING", "OCSF_VERSION", "render"]
