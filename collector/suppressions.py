"""Suppression rules as data (``policies/suppressions.yaml`` or ``--suppressions FILE``).

A rule matches an alert when every criterion it names matches (AND); a list inside a criterion is an
OR. Criteria: ``types`` (globs over the alert type id), ``api``, ``method``, ``path`` (globs over the
endpoint), ``cidrs`` (client IP in any network), ``principals`` (hashed principal, exact), and an
optional ``until`` after which the rule stops applying.

What suppression does: a *new* alert that matches is stored with status ``suppressed`` (so it stays
visible with ``GET /api/v1/alerts?status=suppressed`` and is counted like any other) and is never
exported. Rules are applied when an alert is created: an alert that already exists keeps its status
when a rule is added later (an admin can set it to ``dismissed``), and an admin can un-suppress an
alert by setting it ``active``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from collector.yamlnodes import Doc, YamlFileError, read_text

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "policies" / "suppressions.yaml"
_RULE_KEYS = {"id", "reason", "types", "api", "method", "path", "cidrs", "principals", "until"}
_CRITERIA = ("types", "api", "method", "path", "cidrs", "principals")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SuppressionError(YamlFileError):
    """The suppressions file is invalid (``FILE:LINE: problem``)."""


@dataclass(frozen=True, slots=True)
class AlertKey:
    """What a rule looks at: the alert's group key."""

    type: str
    api: str
    method: str
    path: str
    client_ip: str  # "" when unknown
    principal: str  # "" when unknown


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    reason: str = ""
    types: tuple[str, ...] = ()
    api: tuple[str, ...] = ()
    method: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    cidrs: tuple[Network, ...] = ()
    principals: frozenset[str] = field(default_factory=frozenset)
    until: datetime | None = None

    def matches(self, key: AlertKey, now: datetime) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.types and not any(fnmatchcase(key.type, g) for g in self.types):
            return False
        if self.api and not any(fnmatchcase(key.api, g) for g in self.api):
            return False
        if self.method and key.method.upper() not in self.method:
            return False
        if self.path and not any(fnmatchcase(key.path, g) for g in self.path):
            return False
        if self.principals and key.principal not in self.principals:
            return False
        return not self.cidrs or _in_any(key.client_ip, self.cidrs)


def _in_any(ip: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False  # no (or no valid) client IP: a CIDR rule cannot vouch for it
    return any(address in net for net in networks)


@dataclass(frozen=True, slots=True)
class Suppressions:
    rules: tuple[Rule, ...] = ()

    def match(self, key: AlertKey, now: datetime) -> str | None:
        """The id of the first rule that matches, else None."""
        for rule in self.rules:
            if rule.matches(key, now):
                return rule.id
        return None


def load(path: Path | str = DEFAULT_PATH) -> Suppressions:
    return parse(read_text(str(path), SuppressionError), str(path))


def parse(text: str, source: str) -> Suppressions:
    doc = Doc(text, source, SuppressionError)
    if doc.root is None:
        return Suppressions()
    top = doc.mapping(doc.root, "the file", {"version", "suppressions"})
    doc.version_1(top)
    rules: list[Rule] = []
    seen: set[str] = set()
    for node in doc.sequence(top.get("suppressions"), "suppressions"):
        rule = _rule(doc, node)
        if rule.id in seen:
            raise doc.fail(node, f"duplicate suppression id {rule.id!r}")
        seen.add(rule.id)
        rules.append(rule)
    return Suppressions(tuple(rules))


def _rule(doc: Doc, node: yaml.Node) -> Rule:
    fields = doc.mapping(node, "a suppression", _RULE_KEYS)
    if "id" not in fields:
        raise doc.fail(node, "a suppression needs an 'id'")
    if not any(k in fields for k in _CRITERIA):
        # A rule without criteria would silence every alert; make that impossible by accident.
        raise doc.fail(node, f"a suppression needs at least one of {', '.join(_CRITERIA)}")
    cidrs: list[Network] = []
    for item in doc.sequence(fields["cidrs"], "cidrs") if "cidrs" in fields else []:
        try:
            cidrs.append(ipaddress.ip_network(doc.string(item, "a CIDR", max_len=64), strict=False))
        except ValueError:
            raise doc.fail(item, f"{doc.value(item)!r} is not a network such as 10.0.0.0/8") from None
    until = None
    if "until" in fields:
        until = _instant(doc, fields["until"])

    def strings(name: str) -> tuple[str, ...]:
        return doc.strings(fields[name], name) if name in fields else ()

    return Rule(
        id=doc.string(fields["id"], "id", max_len=100),
        reason=doc.string(fields["reason"], "reason", max_len=300) if "reason" in fields else "",
        types=strings("types"),
        api=strings("api"),
        method=tuple(m.upper() for m in strings("method")),
        path=strings("path"),
        cidrs=tuple(cidrs),
        principals=frozenset(strings("principals")),
        until=until,
    )


def _instant(doc: Doc, node: yaml.Node) -> datetime:
    value = doc.value(node)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise doc.fail(node, "until must be a date or an ISO 8601 time, e.g. 2026-12-31T00:00:00Z")


__all__ = ["DEFAULT_PATH", "AlertKey", "Rule", "SuppressionError", "Suppressions", "load", "parse"]
