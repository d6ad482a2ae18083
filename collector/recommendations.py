"""Recommendations as data: ``policies/recommendations.yaml``, validated at load, evaluated from findings.

A bad file fails with one line naming the file, the line and the problem (``RecommendationsError``);
validation is by hand over the YAML node tree so every message can point at a line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from collector.posture import FINDING_SEVERITIES, FINDING_TYPES
from collector.store.posture_store import FindingRow

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "policies" / "recommendations.yaml"
_FIELDS = {
    "id": str, "title": str, "severity": str, "description": str, "remediation": list, "finding_types": list,
    "applicable": bool, "not_applicable_reason": str, "require_external": bool,
}
_REQUIRED = ("id", "title", "severity", "description", "remediation", "finding_types")


class RecommendationsError(ValueError):
    """The recommendations file is invalid (message: ``FILE:LINE: problem``)."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    id: str
    title: str
    severity: str
    description: str
    remediation: tuple[str, ...]
    finding_types: tuple[str, ...]
    applicable: bool = True
    not_applicable_reason: str = ""
    require_external: bool = False  # only endpoints that also have an open external_exposure finding


def load(path: Path | str = DEFAULT_PATH) -> list[Recommendation]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecommendationsError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, str(path))


def parse(text: str, source: str) -> list[Recommendation]:
    def fail(node: yaml.Node | None, problem: str) -> RecommendationsError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return RecommendationsError(f"{source}{line}: {problem}")

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RecommendationsError(f"{source}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(root, yaml.MappingNode):
        raise fail(root, "the file must be a mapping with 'version' and 'recommendations'")
    top = {k.value: v for k, v in root.value}
    if set(top) - {"version", "recommendations"}:
        raise fail(root, f"unknown top-level key(s): {', '.join(sorted(set(top) - {'version', 'recommendations'}))}")
    if _scalar(top.get("version")) != 1:
        raise fail(top.get("version", root), "version must be 1")
    items = top.get("recommendations")
    if not isinstance(items, yaml.SequenceNode) or not items.value:
        raise fail(items or root, "recommendations must be a non-empty list")
    out: list[Recommendation] = []
    seen: set[str] = set()
    for node in items.value:
        if not isinstance(node, yaml.MappingNode):
            raise fail(node, "each recommendation must be a mapping")
        fields = {k.value: v for k, v in node.value}
        values: dict[str, Any] = {}
        for key, value_node in fields.items():
            if key not in _FIELDS:
                raise fail(value_node, f"unknown field {key!r}")
            value = yaml.safe_load(yaml.serialize(value_node))
            if not isinstance(value, _FIELDS[key]):
                raise fail(value_node, f"{key} must be a {_FIELDS[key].__name__}")
            values[key] = value
        for key in _REQUIRED:
            if key not in values:
                raise fail(node, f"missing field {key!r}")
        if values["id"] in seen:
            raise fail(fields["id"], f"duplicate id {values['id']!r}")
        seen.add(values["id"])
        if values["severity"] not in FINDING_SEVERITIES:
            raise fail(fields["severity"], f"severity must be one of {', '.join(FINDING_SEVERITIES)}")
        unknown = [t for t in values["finding_types"] if t not in FINDING_TYPES]
        if unknown:
            raise fail(fields["finding_types"], f"unknown finding type(s) {', '.join(map(str, unknown))}")
        if not all(isinstance(step, str) and step for step in values["remediation"]):
            raise fail(fields["remediation"], "remediation must be a list of non-empty strings")
        values["remediation"] = tuple(values["remediation"])
        values["finding_types"] = tuple(values["finding_types"])
        out.append(Recommendation(**values))
    return out


def _scalar(node: yaml.Node | None) -> Any:
    return yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None


def evaluate(
    recs: list[Recommendation], open_findings: Mapping[str, list[FindingRow]], endpoints: int
) -> list[dict[str, Any]]:
    """Each recommendation with its status and affected endpoints."""
    external = {f.endpoint_id for f in open_findings.get("external_exposure", [])}
    out = []
    for rec in recs:
        affected: dict[str, dict[str, Any]] = {}
        for type_ in rec.finding_types:
            for f in open_findings.get(type_, []):
                if rec.require_external and f.endpoint_id not in external:
                    continue
                entry = affected.setdefault(
                    f.endpoint_id,
                    {"id": f.endpoint_id, "api": f.api, "method": f.method, "path": f.path, "findings": []},
                )
                entry["findings"].append({"id": f.id, "type": f.type, "severity": f.severity})
        status = "unhealthy" if affected else "healthy"
        if not rec.applicable or endpoints == 0:
            status = "not_applicable"
        out.append({
            "id": rec.id,
            "title": rec.title,
            "severity": rec.severity,
            "description": rec.description,
            "remediation": list(rec.remediation),
            "finding_types": list(rec.finding_types),
            "status": status,
            "not_applicable_reason": (rec.not_applicable_reason or None) if not rec.applicable else (
                "no endpoints in the inventory yet" if endpoints == 0 else None
            ),
            "affected_endpoints": sorted(affected.values(), key=lambda e: (e["api"], e["path"], e["method"])),
        })
    return out


def finding_types_needed(recs: list[Recommendation]) -> set[str]:
    needed = {t for rec in recs for t in rec.finding_types}
    if any(rec.require_external for rec in recs):
        needed.add("external_exposure")
    return needed


__all__ = [
    "DEFAULT_PATH", "Recommendation", "RecommendationsError", "evaluate", "finding_types_needed", "load", "parse"
]
