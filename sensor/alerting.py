"""Grouping of per-request detections into alerts: one alert per (type, endpoint, client) per window.

Detectors report *occurrences* (a signature verdict on one request); the aggregator folds them into
``AlertEvent``s with a count, first/last seen and bounded evidence, and hands them out when their
window closes. Bounded like everything in the sensor: at most ``max_groups`` open groups per window
(further occurrences are counted in ``overflow``), at most ``MAX_EVIDENCE`` excerpts per alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sensor.events import AlertClient, AlertEndpoint, AlertEvent
from sensor.observation import Observation
from sensor.signatures import Match, ScanResult

MAX_EVIDENCE = 5  # redacted excerpts kept per alert
MAX_RULES = 20

CATEGORY_TITLES = {
    "sqli": "SQL injection attempt",
    "xss": "Cross-site scripting attempt",
    "command_injection": "OS command injection attempt",
    "path_traversal": "Path traversal / local file inclusion attempt",
    "rfi": "Remote file inclusion attempt",
    "ssrf": "Server-side request forgery attempt",
    "xxe": "XML external entity attempt",
    "nosqli": "NoSQL injection attempt",
    "ssti": "Template injection attempt",
    "ldapi": "LDAP injection attempt",
    "jndi": "JNDI lookup (Log4Shell-style) attempt",
    "crlf": "CRLF / header injection attempt",
    "prototype_pollution": "Prototype pollution attempt",
    "deserialization": "Serialized object in input (deserialization attack)",
    "scanner": "Attack tool user agent",
}
# Rule severities are four-level (critical..low); alerts use the collector's three-plus-info scale.
ALERT_SEVERITY = {"critical": "high", "high": "high", "medium": "medium", "low": "low"}
_SEVERITY_RANK = {"informational": 0, "low": 1, "medium": 2, "high": 3}


def signature_alert_type(category: str) -> str:
    """Stable alert type id of a signature category, e.g. ``SIG_SQLI``."""
    return "SIG_" + category.upper()


@dataclass(slots=True)
class _Group:
    type: str
    title: str
    severity: str
    endpoint: AlertEndpoint
    client: AlertClient
    first_seen: float
    last_seen: float
    count: int = 0
    blocked: int = 0
    max_score: int = 0
    rule_ids: dict[str, None] = field(default_factory=dict)  # ordered set
    locations: dict[str, None] = field(default_factory=dict)
    excerpts: list[dict[str, str]] = field(default_factory=list)
    owasp: dict[str, None] = field(default_factory=dict)
    mitre: dict[str, None] = field(default_factory=dict)


class AlertAggregator:
    def __init__(self, window_seconds: float, *, max_groups: int = 10_000) -> None:
        self.window = window_seconds
        self.max_groups = max_groups
        self._groups: dict[float, dict[tuple[str, str, str, str, str | None, str | None], _Group]] = {}
        self.overflow = 0
        self.occurrences = 0

    def add_signature_verdict(self, obs: Observation, result: ScanResult, *, blocked: bool = False) -> None:
        """One request's signature verdict: one occurrence per matched category."""
        by_category: dict[str, list[Match]] = {}
        for match in result.matches:
            by_category.setdefault(match.category, []).append(match)
        for category, matches in by_category.items():
            group = self._group(obs, signature_alert_type(category), CATEGORY_TITLES.get(category, category))
            if group is None:
                continue
            severity = max((ALERT_SEVERITY.get(m.severity, "medium") for m in matches), key=_SEVERITY_RANK.__getitem__)
            if _SEVERITY_RANK[severity] > _SEVERITY_RANK[group.severity]:
                group.severity = severity
            group.count += 1
            group.blocked += int(blocked)
            group.max_score = max(group.max_score, result.score)
            group.first_seen = min(group.first_seen, obs.timestamp)
            group.last_seen = max(group.last_seen, obs.timestamp)
            for m in matches:
                if len(group.rule_ids) < MAX_RULES:
                    group.rule_ids[m.rule_id] = None
                group.locations[m.location] = None
                if m.owasp:
                    group.owasp[m.owasp] = None
                if m.mitre:
                    group.mitre[m.mitre] = None
                if len(group.excerpts) < MAX_EVIDENCE:
                    group.excerpts.append({"rule_id": m.rule_id, "location": m.location, "name": m.name[:64],
                                           "excerpt": m.excerpt})

    def _group(self, obs: Observation, type_: str, title: str) -> _Group | None:
        self.occurrences += 1
        window_start = obs.timestamp - obs.timestamp % self.window
        groups = self._groups.setdefault(window_start, {})
        key = (type_, obs.route.api, obs.method, obs.route.template, obs.client.ip, obs.auth.principal)
        group = groups.get(key)
        if group is None:
            if len(groups) >= self.max_groups:
                self.overflow += 1
                return None
            group = groups[key] = _Group(
                type=type_,
                title=title,
                severity="low",
                endpoint=AlertEndpoint(api=obs.route.api, method=obs.method, path=obs.route.template),
                client=AlertClient(ip=obs.client.ip, principal=obs.auth.principal),
                first_seen=obs.timestamp,
                last_seen=obs.timestamp,
            )
        return group

    def drain(self, now: float, *, force: bool = False) -> list[AlertEvent]:
        """Alerts of the windows that have ended by ``now`` (all of them when ``force``)."""
        out: list[AlertEvent] = []
        for start in sorted(self._groups):
            if not force and start + self.window > now:
                continue
            for g in self._groups.pop(start).values():
                out.append(
                    AlertEvent(
                        type=g.type,
                        title=g.title,
                        severity=g.severity,
                        endpoint=g.endpoint,
                        client=g.client,
                        first_seen=datetime.fromtimestamp(g.first_seen, UTC),
                        last_seen=datetime.fromtimestamp(g.last_seen, UTC),
                        count=g.count,
                        rule_ids=list(g.rule_ids),
                        evidence={
                            "window_seconds": self.window,
                            "blocked": g.blocked,
                            "max_anomaly_score": g.max_score,
                            "locations": list(g.locations),
                            "owasp": list(g.owasp),
                            "mitre_techniques": list(g.mitre),
                            "matches": g.excerpts,
                        },
                    )
                )
        return out
