"""Alert presentation: the stable type catalogue (tactics, OWASP, remediation) and the alert view."""

from __future__ import annotations

from typing import Any

from collector.store.store import AlertRow
from collector.timefmt import iso

SEVERITIES = ("high", "medium", "low", "informational")

# type id -> (MITRE ATT&CK tactics, OWASP API Top 10 2023, remediation). Ids are stable contracts.
_CATALOGUE: dict[str, tuple[list[str], list[str], str]] = {
    "API_PopulationSpikeInAPITraffic": (
        ["Impact"], ["API4:2023"], "Check for a denial-of-service attempt; apply rate limits per endpoint."
    ),
    "API_SpikeInAPITraffic": (
        ["Impact"], ["API4:2023"], "Rate-limit or block the client IP if the volume is not expected."
    ),
    "API_SpikeInPayload": (
        ["Initial access"], ["API3:2023"], "Check the response for data exfiltration; limit response fields."
    ),
    "API_SpikeInLatency": (
        ["Initial access"], ["API4:2023"], "Check for expensive queries or injection driven by this client."
    ),
    "API_SprayInRequests": (
        ["Discovery"], ["API9:2023"], "A client is mapping the API; block it if it is not a known scanner."
    ),
    "API_ParameterEnumeration": (
        ["Initial access"], ["API1:2023"], "Enforce object-level authorization; rate-limit the client."
    ),
    "API_DistributedParameterEnumeration": (
        ["Initial access"], ["API1:2023"], "Enforce object-level authorization on this parameter."
    ),
    "API_UnseenParamType": (["Impact"], ["API8:2023"], "Validate parameter types against a schema."),
    "API_UnseenParam": (
        ["Impact"], ["API3:2023"], "Reject unknown parameters (mass assignment) with schema validation."
    ),
    "API_AccessFromTorExitNode": (["Pre-attack"], [], "Block Tor exit nodes if anonymous access is not needed."),
    "API_AccessFromSuspiciousIP": (["Pre-attack"], [], "Block the IP; review what it accessed."),
    "API_AccessFromSuspiciousUserAgent": (
        ["Execution"], [], "Block the client; attack tools announce themselves in the user agent."
    ),
}
_SIGNATURE = (["Initial access"], ["API8:2023"], "Validate and encode input; block the client if it persists.")


def catalogue_entry(type_: str) -> tuple[list[str], list[str], str]:
    if type_ in _CATALOGUE:
        return _CATALOGUE[type_]
    if type_.startswith("SIG_"):
        return _SIGNATURE
    return [], [], "Review the evidence."


def alert_view(row: AlertRow) -> dict[str, Any]:
    tactics, owasp, remediation = catalogue_entry(row.type)
    return {
        "id": row.id,
        "type": row.type,
        "title": row.title,
        "severity": row.severity,
        "status": row.status,
        "status_changed_by": row.status_by,
        "status_changed_at": iso(row.status_at),
        "endpoint": {"id": row.endpoint_id, "api": row.api, "method": row.method, "path": row.path},
        "client": {"ip": row.client_ip or None, "principal": row.principal or None},
        "count": row.count,
        "first_seen": iso(row.first_seen),
        "last_seen": iso(row.last_seen),
        "mitre_tactics": list(tactics),
        "owasp": list(owasp),
        "evidence": row.evidence,
        "rule_ids": row.rule_ids,
        "remediation": remediation,
    }
