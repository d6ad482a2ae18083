"""Posture findings: pure rules over one endpoint's stored facts (no IO).

Every finding type id below is a stable contract (API filters, recommendations, SIEM records). A rule
returns the finding while its condition holds; ``collector.posture_jobs`` stores what is returned and
resolves what is no longer returned, so a finding closes by itself when the condition ends.

Facts count for 30 days (``collector.inventory.derive``): an endpoint nobody called for 30 days drops
back to unknown authentication and no exposure, and its findings about traffic resolve; it gets the
``inactive_30d`` finding instead.

Weak tokens are judged from the requests the sensor counted per JWT fact (``EndpointFacts.jwt_facts``,
facts last seen in the last 30 days): the token is only decoded, never verified, so the facts say
what clients sent and (``unsigned_accepted``) what the backend answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collector.inventory import CREDENTIAL_LOCATIONS, derive
from collector.store.store import EndpointFacts
from collector.timefmt import iso

FINDING_TYPES: dict[str, str] = {
    "unauthenticated_endpoint": "Endpoint answers requests without credentials",
    "inactive_30d": "Endpoint not called for 30 days",
    "external_exposure": "Endpoint receives traffic from the internet",
    "sensitive_data_exposed": "Endpoint carries sensitive data",
    "sensitive_data_in_url": "Sensitive data in the URL path or query",
    "credentials_in_query": "Credentials sent in the query string",
    "plaintext_http": "Plaintext HTTP observed",
    "shadow_endpoint": "Endpoint called but not in the API's spec",
    "zombie_endpoint": "Deprecated endpoint still called",
    "undocumented_parameters": "Parameters not declared in the spec (spec drift)",
    "auth_not_enforced": "Spec declares authentication but requests without credentials succeed",
    "weak_tokens": "Weak tokens: alg none, no expiry, lifetime over 24 h, or symmetric signing on external endpoints",
}
FINDING_SEVERITIES = ("high", "medium", "low", "informational")
FINDING_STATUSES = ("open", "resolved")

# Query parameter names that carry keys and passwords (lower-cased). The sensor reports parameter
# names, never values, so the name is the signal.
CREDENTIAL_QUERY_NAMES = frozenset(
    {
        "api_key", "apikey", "api-key", "key", "subscription-key", "subscription_key", "access_token",
        "token", "password", "passwd", "pwd", "secret", "client_secret", "auth", "sig", "signature",
    }
)
# JWT facts that make a token weak wherever it is used; "symmetric" only counts on external endpoints
# (a shared secret that internet clients' tokens are signed with is one leak away from forged tokens).
WEAK_TOKEN_FACTS = ("unsigned", "alg_none", "no_exp", "long_lifetime")

# Data types that are credentials when they appear in a URL.
CREDENTIAL_TYPES = frozenset(
    {
        "jwt", "bearer_token", "authorization_header", "password", "private_key", "api_key",
        "aws_access_key", "aws_secret_key", "azure_connection_string", "gcp_api_key", "github_token",
        "slack_token", "connection_string",
    }
)


@dataclass(frozen=True, slots=True)
class Finding:
    type: str
    severity: str
    evidence: dict[str, Any]


def evaluate(f: EndpointFacts, now: datetime) -> list[Finding]:
    """The findings whose condition holds for this endpoint now."""
    d = derive(f, now)
    out: list[Finding] = []
    active = d.status == "active"
    # Request-header credentials are authentication, not exposed data (see inventory.CREDENTIAL_LOCATIONS).
    sensitive = sorted({(r.type, r.location) for r in f.data_types if r.location not in CREDENTIAL_LOCATIONS})

    if d.status == "inactive":
        out.append(Finding("inactive_30d", "low", {"last_called": iso(f.last_called)}))

    if d.authentication == "unauthenticated":
        severity = "high" if d.external or d.sensitivity in ("high", "medium") else "medium"
        out.append(
            Finding(
                "unauthenticated_endpoint",
                severity,
                {"unauthenticated_success": f.unauthenticated_success, "auth_schemes": dict(f.auth_schemes)},
            )
        )
        if f.in_spec and f.spec_security and all(f.spec_security):
            out.append(
                Finding(
                    "auth_not_enforced",
                    "high",
                    {"declared_security": f.spec_security, "unauthenticated_success": f.unauthenticated_success},
                )
            )

    if d.external:
        out.append(Finding("external_exposure", "low", {"last_external": iso(f.last_external)}))

    if sensitive:
        severity = {"high": "high", "medium": "medium"}.get(d.sensitivity, "low")
        if d.external and severity == "medium":
            severity = "high"  # what the internet can reach weighs more
        out.append(
            Finding(
                "sensitive_data_exposed",
                severity,
                {
                    "sensitivity": d.sensitivity,
                    "data_types": [{"type": t, "location": loc} for t, loc in sensitive],
                    "external": d.external,
                },
            )
        )
    in_url = [(t, loc) for t, loc in sensitive if loc in ("path", "query")]
    if in_url:
        out.append(
            Finding(
                "sensitive_data_in_url",
                "high" if d.sensitivity == "high" else "medium",
                {"data_types": [{"type": t, "location": loc} for t, loc in in_url]},
            )
        )

    keys = sorted(
        {p.name for p in f.recent_params if p.location == "query" and p.name.lower() in CREDENTIAL_QUERY_NAMES}
    )
    key_types = sorted({t for t, loc in in_url if loc == "query" and t in CREDENTIAL_TYPES})
    if keys or key_types:
        out.append(Finding("credentials_in_query", "high", {"parameters": keys, "data_types": key_types}))

    if d.plaintext:
        out.append(Finding("plaintext_http", "medium", {"plaintext_requests": f.plaintext_requests}))

    if d.shadow:
        out.append(
            Finding(
                "shadow_endpoint",
                "high" if d.external else "medium",
                {"last_called": iso(f.last_called), "external": d.external},
            )
        )

    if f.in_spec and f.deprecated and active:
        out.append(Finding("zombie_endpoint", "medium", {"last_called": iso(f.last_called)}))

    if f.in_spec and active:
        undocumented = _undocumented(f)
        if undocumented:
            out.append(Finding("undocumented_parameters", "low", {"parameters": undocumented}))

    weak = _weak_tokens(f, d.external)
    if weak is not None:
        out.append(weak)
    return out


def _weak_tokens(f: EndpointFacts, external: bool) -> Finding | None:
    """High when the backend answered 2xx to an unsigned token (anyone can forge one), else medium."""
    tokens = f.jwt_facts
    facts = {name: tokens[name] for name in WEAK_TOKEN_FACTS if tokens.get(name, 0) > 0}
    if external and tokens.get("symmetric", 0) > 0:
        facts["symmetric"] = tokens["symmetric"]
    if not facts:
        return None
    accepted = tokens.get("unsigned_accepted", 0)
    return Finding(
        "weak_tokens",
        "high" if accepted > 0 else "medium",
        {"facts": facts, "jwt_requests": tokens.get("jwt", 0), "unsigned_accepted": accepted, "external": external},
    )


def _undocumented(f: EndpointFacts) -> list[dict[str, str]]:
    """Observed query (and, when the spec lists body fields, body) parameters the spec lacks."""
    declared = set(f.spec_params)
    out = []
    for p in f.recent_params:
        judged = p.location == "query" or (p.location == "body" and f.body_declared)
        if judged and (p.location, p.name) not in declared:
            out.append({"location": p.location, "name": p.name})
    return out


__all__ = [
    "CREDENTIAL_QUERY_NAMES",
    "FINDING_SEVERITIES",
    "FINDING_STATUSES",
    "FINDING_TYPES",
    "WEAK_TOKEN_FACTS",
    "Finding",
    "evaluate",
]
