"""Alert presentation: the stable type catalogue (tactics, OWASP, remediation) and the alert view.

Every alert carries a MITRE ATT&CK tactic, an OWASP API Security Top 10 (2023) mapping and remediation
steps: known types from the catalogue below, signature alerts (``SIG_<CATEGORY>``) from their
category, anything else from a generic entry. Type ids are stable contracts (SIEM rules key on them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.store.store import AlertRow
from collector.timefmt import iso

SEVERITIES = ("high", "medium", "low", "informational")

# Tactic names as the commercial plan's alerts spell them -> MITRE ATT&CK enterprise tactic ids.
# "Pre-attack" (the retired PRE-ATT&CK matrix) lives on as Reconnaissance.
TACTIC_IDS = {
    "Pre-attack": "TA0043",
    "Reconnaissance": "TA0043",
    "Initial access": "TA0001",
    "Execution": "TA0002",
    "Persistence": "TA0003",
    "Privilege escalation": "TA0004",
    "Defense evasion": "TA0005",
    "Credential access": "TA0006",
    "Discovery": "TA0007",
    "Collection": "TA0009",
    "Exfiltration": "TA0010",
    "Impact": "TA0040",
}

OWASP_NAMES = {
    "API1:2023": "Broken Object Level Authorization",
    "API2:2023": "Broken Authentication",
    "API3:2023": "Broken Object Property Level Authorization",
    "API4:2023": "Unrestricted Resource Consumption",
    "API5:2023": "Broken Function Level Authorization",
    "API6:2023": "Unrestricted Access to Sensitive Business Flows",
    "API7:2023": "Server Side Request Forgery",
    "API8:2023": "Security Misconfiguration",
    "API9:2023": "Improper Inventory Management",
    "API10:2023": "Unsafe Consumption of APIs",
}


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    tactics: tuple[str, ...]
    owasp: tuple[str, ...]
    remediation: tuple[str, ...]  # steps, in the order a responder takes them

    @property
    def tactic_ids(self) -> list[str]:
        return [TACTIC_IDS[t] for t in self.tactics if t in TACTIC_IDS]


def _e(tactics: str, owasp: str, *steps: str) -> CatalogueEntry:
    return CatalogueEntry(tuple(filter(None, [tactics])), tuple(filter(None, owasp.split(","))), steps)


_CATALOGUE: dict[str, CatalogueEntry] = {
    "API_PopulationSpikeInAPITraffic": _e(
        "Impact", "API4:2023",
        "Check for a denial-of-service attempt against this endpoint.",
        "Apply rate limits per endpoint and per client at the gateway.",
    ),
    "API_SpikeInAPITraffic": _e(
        "Impact", "API4:2023",
        "Confirm whether the client's volume is expected (batch job, partner integration).",
        "Rate-limit or block the client IP if it is not.",
    ),
    "API_SpikeInPayload": _e(
        "Initial access", "API3:2023",
        "Check the responses to this client for data exfiltration.",
        "Limit response fields and page sizes; enforce object property level authorization.",
    ),
    "API_SpikeInLatency": _e(
        "Initial access", "API4:2023",
        "Look for expensive queries or injection driven by this client.",
        "Add query timeouts and complexity limits.",
    ),
    "API_SprayInRequests": _e(
        "Discovery", "API9:2023",
        "A client is mapping the API: block it if it is not a known scanner.",
        "Remove or protect endpoints that are not meant to be public.",
    ),
    "API_ParameterEnumeration": _e(
        "Initial access", "API1:2023",
        "Enforce object-level authorization on the enumerated parameter.",
        "Rate-limit the client; use unguessable identifiers.",
    ),
    "API_DistributedParameterEnumeration": _e(
        "Initial access", "API1:2023",
        "Enforce object-level authorization on this parameter.",
        "Rate-limit the endpoint across clients; use unguessable identifiers.",
    ),
    "API_UnseenParamType": _e(
        "Impact", "API8:2023", "Validate parameter types against a schema (OpenAPI) at the gateway."
    ),
    "API_UnseenParam": _e(
        "Impact", "API3:2023",
        "Reject unknown parameters with schema validation (mass assignment).",
        "Check whether the parameter changed server-side state.",
    ),
    "API_AccessFromTorExitNode": _e(
        "Pre-attack", "", "Block Tor exit nodes if anonymous access is not needed.", "Review what the client accessed."
    ),
    "API_AccessFromSuspiciousIP": _e(
        "Pre-attack", "", "Block the IP at the edge.", "Review everything it accessed and the data it received."
    ),
    "API_AccessFromSuspiciousUserAgent": _e(
        "Execution", "",
        "Block the client: attack tools announce themselves in the user agent.",
        "Review the requests it sent for successful exploitation.",
    ),
    # Beyond the commercial plan's list (sensor.behaviour): same contract, apiward's own ids.
    "API_BOLA": _e(
        "Collection", "API1:2023",
        "Check object-level authorization: the caller read objects that belong to other principals.",
        "Enforce ownership checks in the handler, not only authentication.",
    ),
    "API_BruteForce": _e(
        "Credential access", "API2:2023",
        "Lock or slow down the targeted account and the source address.",
        "Require multi-factor authentication on the login flow.",
    ),
    "API_CredentialStuffing": _e(
        "Credential access", "API2:2023",
        "Block the sources; force password resets for accounts that logged in successfully.",
        "Add bot protection and breached-password checks to the login flow.",
    ),
    "API_BrokenAuthentication": _e(
        "Initial access", "API2:2023",
        "Reject unsigned (alg none), expired and unverifiable tokens in the API or gateway.",
        "Review what the accepted requests returned.",
    ),
    "API_ExcessiveDataExposure": _e(
        "Exfiltration", "API3:2023",
        "Check why the endpoint returned data types it normally does not, or far more records than usual "
        "(evidence variant: unusual_data_type or record_count).",
        "Return only the fields the client needs (response schemas, field filtering) and cap page sizes "
        "server-side so one request cannot list a whole collection.",
    ),
}

# Signature alerts are SIG_<CATEGORY> (sensor.alerting), one entry per signature category.
_INJECTION = ("Validate input against a schema and encode output.", "Block the client if it persists.")
_SIGNATURES: dict[str, CatalogueEntry] = {
    "SQLI": _e("Initial access", "API8:2023", "Use parameterised queries for every database call.", *_INJECTION),
    "NOSQLI": _e("Initial access", "API8:2023", "Reject operator objects ($ne, $gt) in user input.", *_INJECTION),
    "XSS": _e("Execution", "API8:2023", "Encode output for its context; set a Content-Security-Policy.", *_INJECTION),
    "COMMAND_INJECTION": _e(
        "Execution", "API8:2023", "Never pass user input to a shell; use argument lists.", *_INJECTION
    ),
    "PATH_TRAVERSAL": _e(
        "Initial access", "API8:2023", "Resolve paths and check they stay under the allowed root.", *_INJECTION
    ),
    "SSRF_RFI": _e(
        "Initial access", "API7:2023",
        "Allow-list outbound destinations; block link-local and metadata addresses.", *_INJECTION,
    ),
    "XXE": _e("Initial access", "API8:2023", "Disable DTDs and external entities in XML parsers.", *_INJECTION),
    "SSTI": _e("Execution", "API8:2023", "Never render user input as a template.", *_INJECTION),
    "JNDI": _e("Execution", "API8:2023", "Patch Log4j (CVE-2021-44228) and disable JNDI lookups.", *_INJECTION),
    "LDAPI": _e("Initial access", "API8:2023", "Escape LDAP filter values.", *_INJECTION),
    "CRLF": _e("Initial access", "API8:2023", "Reject CR/LF in values that reach headers.", *_INJECTION),
    "DESERIALIZATION": _e(
        "Execution", "API8:2023", "Do not deserialise untrusted data into objects.", *_INJECTION
    ),
    "PROTOTYPE_POLLUTION": _e(
        "Execution", "API8:2023", "Reject __proto__ and constructor keys in JSON input.", *_INJECTION
    ),
    "SCANNER": _e("Pre-attack", "API9:2023", "Block the scanner unless it is yours.", "Review what it found."),
}
_SIGNATURE = _e("Initial access", "API8:2023", *_INJECTION)
_GENERIC = _e("", "", "Review the evidence.")


def catalogue_entry(type_: str) -> CatalogueEntry:
    if type_ in _CATALOGUE:
        return _CATALOGUE[type_]
    if type_.startswith("SIG_"):
        return _SIGNATURES.get(type_[4:], _SIGNATURE)
    return _GENERIC


def known_types() -> list[str]:
    return [*_CATALOGUE, *(f"SIG_{c}" for c in _SIGNATURES)]


def alert_view(row: AlertRow) -> dict[str, Any]:
    entry = catalogue_entry(row.type)
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
        "mitre_tactics": list(entry.tactics),
        "mitre_tactic_ids": entry.tactic_ids,
        "owasp": list(entry.owasp),
        "evidence": row.evidence,
        "rule_ids": row.rule_ids,
        "remediation": " ".join(entry.remediation),
        "remediation_steps": list(entry.remediation),
    }
