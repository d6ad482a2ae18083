"""The explorer's language (table-driven, pure) and its SQL agreeing with the endpoint views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector import explorer, inventory
from collector import recommendations as recs
from collector.specs import parse_spec
from collector.store import Store
from collector.store import posture_store as ps
from tests.collector.factories import NOW, DataTypeSeen, alert, batch, summary
from tests.collector.test_specs import SWAGGER2

NOW_ = datetime.now(UTC)


@pytest.mark.parametrize(
    "text",
    [
        "external",
        "not external",
        'external and authentication = "unauthenticated" and data_type in ("credit_card", "iban")',
        "risk >= 50 or (shadow and not deprecated)",
        "NOT (alerts > 0 OR findings >= 2) AND status != 'inactive'",
        'data_type not in ("email") and sensitivity >= "medium"',
        'path contains "/admin" and method in ("get", "POST")',
        "plaintext = true and shadow != false",
        'api = "it\\"s"',
        "risk < -1.5",
    ],
)
def test_valid_filters(text: str) -> None:
    explorer.parse_filter(text, NOW_)


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("", 0, "empty"),
        ("external and", 12, "expected a field name"),
        ("foo = 1", 0, "unknown field"),
        ("risk = 'high'", 7, "needs a number"),
        ('status = "sleeping"', 9, "must be one of"),
        ("(external", 9, "expected ')'"),
        ("external)", 8, "expected 'and', 'or'"),
        ('api = "open', 6, "unterminated string"),
        ("risk > 1 ; drop", 9, "unexpected character"),
        ("authentication", 14, "expected an operator"),
        ('path > "a"', 5, "supports = and !="),
        ("external = 1", 11, "needs a true/false"),
        ('data_type > "x"', 10, "supports =, !="),
        ("risk contains 'x'", 5, "needs a text field"),
        ("method not like 'x'", 11, "expected 'in' after 'not'"),
        ("api in ()", 8, "expected a value"),
        ("not " * 40 + "external", 128, "nests deeper"),
    ],
)
def test_invalid_filters_point_at_the_problem(text: str, position: int, words: str) -> None:
    with pytest.raises(explorer.QueryError) as err:
        explorer.parse_filter(text, NOW_)
    assert err.value.position == position and words in err.value.message, err.value


def test_templates_parse_and_resolve() -> None:
    for tpl in explorer.TEMPLATES:
        explorer.parse_filter(tpl.filter, NOW_)
        assert explorer.resolve(tpl.id) == (tpl.filter, tpl)
        assert explorer.resolve(tpl.title.upper())[1] is tpl
    assert explorer.resolve("risk > 1") == ("risk > 1", None)


async def test_sql_fields_agree_with_views(store: Store) -> None:
    await ps.import_spec(store, parse_spec(str(SWAGGER2).replace("'", '"').replace("True", "true").encode(),
                                           "s.json", "shop"), NOW_)
    await store.apply_batch(batch([
        summary(path="/a", api="shop", unauthenticated_success=1, plaintext_requests=1,
                external_requests=1, last_external=NOW, data_types=[DataTypeSeen(type="ip_address", location="query")]),
        summary(path="/b", api="shop", data_types=[DataTypeSeen(type="mystery", location="response_body")]),
        summary(path="/api/orders", api="shop", data_types=[DataTypeSeen(type="iban", location="request_body")]),
        summary(path="/old", api="shop", at=NOW - timedelta(days=45), unauthenticated_success=3,
                external_requests=1, last_external=NOW - timedelta(days=45)),
    ], [alert(path="/b")]))
    now = datetime.now(UTC)
    views = {f"{e.method} {e.path}": inventory.endpoint_view(e, now)
             for e in (await store.list_endpoints(now, limit=100)).items}
    checks = {
        "risk": [0, 5, 15, 25, 40, 55, 70, 85, 100],
        "sensitivity": ["none", "low", "medium", "high"],
        "authentication": ["authenticated", "unauthenticated", "unknown"],
        "status": ["active", "inactive", "awaiting_data"],
        "shadow": [True, False],
        "external": [True, False],
        "deprecated": [True, False],
    }
    for field, values in checks.items():
        for value in values:
            literal = "true" if value is True else "false" if value is False else (
                str(value) if isinstance(value, int) else f'"{value}"')
            page = await store.list_endpoints(now, limit=100, where=explorer.parse_filter(f"{field} = {literal}", now))
            view_field = {"risk": lambda v: v["risk"]["score"],
                          "external": lambda v: v["external_traffic_observed"] is not None}.get(
                field, lambda v, f=field: v[f])
            expected = {p for p, v in views.items() if view_field(v) == value}
            assert {f"{e.method} {e.path}" for e in page.items} == expected, (field, value)


def test_recommendations_file_errors_name_the_line(tmp_path: Path) -> None:
    good = recs.load()
    assert {r.id for r in good if not r.applicable} == set()
    cases = [
        ("version: 2\nrecommendations: []\n", ":1:", "version must be 1"),
        ("version: 1\nrecommendations:\n  - id: a\n    title: t\n", ":3:", "missing field 'severity'"),
        ("version: 1\nrecommendations:\n  - id: a\n    title: t\n    severity: huge\n    description: d\n"
         "    remediation: [x]\n    finding_types: []\n", ":5:", "severity must be one of"),
        ("version: 1\nrecommendations:\n  - id: a\n    title: t\n    severity: low\n    description: d\n"
         "    remediation: [x]\n    finding_types: [nope]\n", ":8:", "unknown finding type"),
        ("version: 1\nrecommendations:\n  - id: a\n    colour: red\n", ":4:", "unknown field 'colour'"),
        ("version: 1\nrecommendations: [\n", ":3:", "invalid YAML"),
    ]
    for text, line, words in cases:
        path = tmp_path / "r.yaml"
        path.write_text(text)
        with pytest.raises(recs.RecommendationsError) as err:
            recs.load(path)
        assert f"{path}{line}" in str(err.value) and words in str(err.value), str(err.value)
