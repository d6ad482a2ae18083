"""The analysis chain on fixed exchanges (no sockets): one walk feeding evidence, params, types, verdicts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from multidict import CIMultiDict

from sensor.config import ConfigError, SensorConfig
from sensor.evidence import PrincipalHasher
from sensor.exchange import Exchange
from sensor.pipeline import Pipeline, cookie_pairs, top_level_name
from sensor.summary import SummaryAggregator


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    cfg = SensorConfig(upstream="http://127.0.0.1:9", trusted_proxies=["127.0.0.1/32"], window=60).validate()
    return Pipeline(cfg, SummaryAggregator(60), PrincipalHasher(b"test-key"))


def exchange(**kw: object) -> Exchange:
    base: dict[str, object] = {
        "request_id": "r", "method": "POST", "path": "/api/users/42",
        "query_string": "expand=orders&api_key=k-1234567890",
        "request_headers": CIMultiDict({"Content-Type": "application/json", "X-Forwarded-For": "81.2.69.160",
                                        "Cookie": "session=abc; theme=dark"}),
        "peer_ip": "127.0.0.1", "status": 200, "started_at": time.time(),
        "response_headers": CIMultiDict({"Content-Type": "application/json"}),
    }
    base.update(kw)
    return Exchange(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("leaf_path", "name"),
    [("$.customer.email", "customer"), ("$.name", "name"), ("$[*].id", "[*]"), ("field", "field"), ("$.a[0]", "a")],
)
def test_top_level_name(leaf_path: str, name: str) -> None:
    assert top_level_name(leaf_path) == name


def test_cookie_pairs_are_bounded_and_tolerant() -> None:
    assert cookie_pairs("a=1; b=2;junk; =x") == [("a", "1"), ("b", "2")]
    assert len(cookie_pairs("; ".join(f"c{i}=v" for i in range(500)))) <= 64
    assert cookie_pairs(None) == []


def test_one_exchange_gives_route_evidence_params_types_and_no_attack(pipeline: Pipeline) -> None:
    body = json.dumps({"name": "Ada", "email": "ada@example.com", "address": {"city": "London"}}).encode()
    resp = json.dumps({"id": 42, "card_number": "4111111111111111"}).encode()
    obs, verdict = pipeline.analyse(exchange(request_body=body, request_body_size=len(body), response_body=resp,
                                             response_body_size=len(resp)))
    assert obs.route.template == "/api/users/{id}"
    assert obs.client.external and obs.client.ip == "81.2.69.160"
    assert "api_key" in obs.auth.schemes and "session" in obs.auth.schemes and obs.auth.key_in_query
    assert set(obs.params) == {("query", "expand"), ("query", "api_key"), ("body", "name"), ("body", "email"),
                               ("body", "address")}
    types = {(d.type, d.location, d.status_class) for d in obs.data_types}
    assert ("email", "request_body", "") in types
    assert ("credit_card", "response_body", "2xx") in types
    assert not verdict.blocked and verdict.score == 0


def test_attack_is_scored_and_grouped_into_one_alert(pipeline: Pipeline) -> None:
    now = time.time()
    for _ in range(3):
        pipeline.submit(exchange(method="GET", query_string="q=1%27%20OR%201%3D1--", started_at=now))
    alerts = pipeline.drain_alerts(now + 120)
    (alert,) = [a for a in alerts if a.type == "SIG_SQLI"]
    assert alert.count == 3 and alert.client.ip == "81.2.69.160"
    assert alert.endpoint.path == "/api/users/{id}" and alert.rule_ids
    assert all(len(m["excerpt"]) <= 64 for m in alert.evidence["matches"])  # type: ignore[union-attr]
    assert pipeline.counters.attacks >= 3


def test_failing_stage_is_counted_not_raised(pipeline: Pipeline) -> None:
    before = pipeline.counters.analysis_errors
    pipeline.submit(exchange(request_headers=None))  # a capture bug: no headers at all
    assert pipeline.counters.analysis_errors == before + 1


def test_bad_policy_file_stops_start_up_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "datatypes.yaml").write_text("types:\n  - id: broken\n    name: x\n    category: nonsense\n")
    cfg = SensorConfig(upstream="http://127.0.0.1:9", policies=str(tmp_path)).validate()
    with pytest.raises(ConfigError, match=r"datatypes.yaml:\d+"):
        Pipeline(cfg, SummaryAggregator(60), PrincipalHasher(b"k"))
