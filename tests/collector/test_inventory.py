"""Endpoint field derivations: pure functions, and end to end from stored batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector import inventory
from collector.store import DataTypeRow, EndpointFilter, Store
from tests.collector.factories import NOW, DataTypeSeen, batch, summary


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/users/{id}", "get-users-id"),
        ("POST", "/v1/orders/{order_id}/items", "post-v1-orders-order-id-items"),
        ("DELETE", "/", "delete-root"),
    ],
)
def test_derive_name(method: str, path: str, name: str) -> None:
    assert inventory.derive_name(method, path) == name


@pytest.mark.parametrize(
    ("unauth_ok", "auth_ok", "unauth_rejected", "expected"),
    [
        (1, 5, 5, "unauthenticated"),  # any 2xx without credential wins
        (0, 3, 0, "authenticated"),
        (0, 0, 4, "authenticated"),  # anonymous requests are refused: the backend enforces auth
        (0, 0, 0, "unknown"),
    ],
)
def test_authentication_states(unauth_ok: int, auth_ok: int, unauth_rejected: int, expected: str) -> None:
    assert inventory.authentication(unauth_ok, auth_ok, unauth_rejected) == expected


def test_status() -> None:
    now = NOW
    assert inventory.endpoint_status(None, now) == "awaiting_data"
    assert inventory.endpoint_status(now - timedelta(days=29), now) == "active"
    assert inventory.endpoint_status(now - timedelta(days=31), now) == "inactive"


def test_data_classification_shape() -> None:
    rows = [
        DataTypeRow("email", "response_body", "$.users[*].email", "2xx", 3, NOW, NOW),
        DataTypeRow("email", "response_body", "$.owner.email", "4xx", 1, NOW, NOW),
        DataTypeRow("credit_card", "request_body", "$.card", "", 2, NOW, NOW),
    ]
    got = inventory.data_classification(rows)
    assert set(got) == {"path", "query", "header", "request_body", "response_body"}
    assert got["response_body"] == [
        {"type": "email", "paths": ["$.owner.email", "$.users[*].email"], "status_classes": ["2xx", "4xx"], "count": 4}
    ]
    assert got["request_body"] == [{"type": "credit_card", "paths": ["$.card"], "status_classes": [], "count": 2}]
    assert got["query"] == []


def test_sensitivity_and_risk() -> None:
    assert inventory.sensitivity([]) == "none"
    assert inventory.sensitivity(["ip_public"]) == "low"  # categories come from policies/datatypes.yaml
    assert inventory.sensitivity(["phone_number"]) == "medium"
    assert inventory.sensitivity(["us_ssn"]) == "high"
    assert inventory.sensitivity(["email", "credit_card"]) == "high"
    assert inventory.sensitivity(["something_new"]) == "medium"
    assert inventory.sensitivity(["email"], mapping={"email": "low"}) == "low"
    quiet = inventory.risk(
        external=False, unauthenticated=False, sensitivity_level="none", plaintext=False, active_alerts=0
    )
    assert quiet == {"score": 0, "factors": []}
    loud = inventory.risk(
        external=True, unauthenticated=True, sensitivity_level="high", plaintext=True, active_alerts=2
    )
    assert loud["score"] == 100
    assert [f["factor"] for f in loud["factors"]] == [
        "external_traffic", "unauthenticated", "sensitive_data_high", "plaintext_traffic", "active_alerts"
    ]


async def _views(store: Store) -> dict[str, dict[str, object]]:
    now = datetime.now(UTC)
    page = await store.list_endpoints(now, EndpointFilter(), limit=100)
    return {f.path: inventory.endpoint_view(f, now) for f in page.items}


async def test_fields_from_stored_batches(store: Store) -> None:
    old = NOW - timedelta(days=45)
    await store.apply_batch(
        batch([
            summary(path="/open", unauthenticated_success=2, authenticated_success=0, auth_schemes={"none": 2},
                    requests=2, external_requests=1, last_external=NOW - timedelta(minutes=3)),
            summary(path="/locked", authenticated_success=0, unauthenticated_rejected=3,
                    auth_schemes={"none": 3}, status_classes={"4xx": 3}, requests=3),
            summary(path="/jwt", requests=4),
            summary(path="/idle", requests=0, authenticated_success=0, status_classes={}, auth_schemes={}),
            summary(path="/old", requests=6, at=old),
            summary(path="/cards", requests=1, plaintext_requests=1, data_types=[
                DataTypeSeen(type="credit_card", location="response_body", path="$.card", status_class="2xx"),
                DataTypeSeen(type="email", location="query", path="email"),
            ]),
        ])
    )
    # The same old endpoint called again recently: requests_30d counts only the recent window.
    await store.apply_batch(batch([summary(path="/jwt", requests=1, at=old)]))
    v = await _views(store)

    assert v["/open"]["authentication"] == "unauthenticated"
    assert v["/open"]["auth_schemes"] == {"none": 2}
    assert v["/open"]["external_traffic_observed"] == (NOW - timedelta(minutes=3)).isoformat().replace("+00:00", "Z")
    assert v["/locked"]["authentication"] == "authenticated"
    assert v["/locked"]["external_traffic_observed"] is None
    assert v["/jwt"]["authentication"] == "authenticated"
    assert v["/idle"]["authentication"] == "unknown"

    idle = v["/idle"]
    assert (idle["status"], idle["last_called"], idle["inactive_30d"]) == ("awaiting_data", None, True)
    assert (v["/old"]["status"], v["/old"]["inactive_30d"], v["/old"]["requests_30d"]) == ("inactive", True, 0)
    assert (v["/jwt"]["status"], v["/jwt"]["inactive_30d"], v["/jwt"]["requests_30d"]) == ("active", False, 4)

    cards = v["/cards"]
    assert cards["sensitivity"] == "high"
    classification = cards["data_classification"]
    assert isinstance(classification, dict)
    assert classification["response_body"] == [
        {"type": "credit_card", "paths": ["$.card"], "status_classes": ["2xx"], "count": 1}
    ]
    assert classification["query"] == [{"type": "email", "paths": ["email"], "status_classes": [], "count": 1}]
    risk = cards["risk"]
    assert isinstance(risk, dict)
    assert {f["factor"] for f in risk["factors"]} == {"sensitive_data_high", "plaintext_traffic"}
    assert v["/jwt"]["name"] == "get-jwt"
    assert v["/jwt"]["findings_count"] == 0


async def test_sql_filters_agree_with_derived_fields(store: Store) -> None:
    await store.apply_batch(
        batch([
            summary(path="/a", unauthenticated_success=1),
            summary(path="/b", authenticated_success=0, unauthenticated_rejected=1),
            summary(path="/c", authenticated_success=0),
            summary(path="/d", at=NOW - timedelta(days=31)),
            summary(path="/e", requests=0, authenticated_success=0),
        ])
    )
    now = datetime.now(UTC)
    views = await _views(store)
    for field, values in (
        ("authentication", ("authenticated", "unauthenticated", "unknown")),
        ("status", ("active", "inactive", "awaiting_data")),
    ):
        for value in values:
            page = await store.list_endpoints(now, EndpointFilter(**{field: value}), limit=100)
            assert {e.path for e in page.items} == {p for p, view in views.items() if view[field] == value}


async def test_spec_name_wins_over_derived(store: Store) -> None:
    await store.apply_batch(batch([summary(path="/users/{id}", name="getUser", from_spec=True)]))
    await store.apply_batch(batch([summary(path="/users/{id}")]))  # later summary without a name
    (view,) = (await _views(store)).values()
    assert (view["name"], view["from_spec"]) == ("getUser", True)
