"""API_ExcessiveDataExposure, record_count variant: the walker measures the true length of the response's
largest JSON array (cheaply: ``len()`` before sampling; a lower bound for a body prefix), and the engine
alerts when a 2xx response carries far more records than the endpoint (and the client) usually gets."""

from __future__ import annotations

import json
import random
import time

import msgspec
from multidict import CIMultiDict

from sensor.behaviour import BehaviourEngine
from sensor.behaviour.policy import bundled_behaviour_path, load_behaviour_policy
from sensor.behaviour.synthetic import make
from sensor.config import SensorConfig
from sensor.events import AlertEvent
from sensor.evidence import PrincipalHasher
from sensor.exchange import Exchange
from sensor.pipeline import Pipeline
from sensor.summary import SummaryAggregator
from sensor.walk import WalkStats, exchange_leaves, walk_body

T0 = 1_767_225_600.0


def records(body: bytes, *, complete: bool = True, location: str = "response_body") -> tuple[int, str, bool]:
    st = WalkStats()
    list(walk_body(body, "application/json", location, stats=st, complete=complete))
    return st.records, st.records_path, st.records_partial


def users(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"id": start + i, "name": f"user {start + i}", "email": f"u{start + i}@example.com"} for i in range(n)]


# -- the walker --------------------------------------------------------------------------------------


def test_walker_reports_the_true_length_of_the_largest_array() -> None:
    doc = {"page": 1, "tags": ["a", "b"], "data": {"users": users(5000)}}
    st = WalkStats()
    leaves = list(walk_body(json.dumps(doc).encode(), "application/json", "response_body", stats=st))
    assert (st.records, st.records_path, st.records_partial) == (5000, "$.data.users[*]", False)
    assert st.arrays_sampled == 1 and len(leaves) < 200  # only the sample was walked
    assert records(json.dumps(users(40)).encode()) == (40, "$[*]", False)
    assert records(b'{"a": [[1, 2], [3, 4, 5, 6]]}') == (4, "$.a[*][*]", False)
    assert records(b'{"id": 1, "name": "x"}') == (0, "", False)  # JSON, no array
    assert records(json.dumps(users(50)).encode(), location="request_body") == (-1, "", False)  # response only


def test_walker_counts_a_body_prefix_as_a_lower_bound() -> None:
    body = json.dumps({"users": users(5000)}).encode()
    n, path, partial = records(body[:65536], complete=False)
    assert partial and path == "$.users[*]"
    assert 1000 < n < 5000  # the records before the cut, never more
    assert records(b'{"a": [1, 2, 3], "b": [4, 5', complete=False) == (3, "$.a[*]", True)
    assert records(b"[1, 2, 3, 4, 5, 6, 7", complete=False) == (6, "$[*]", True)  # the 7th may be cut


def test_pipeline_puts_the_count_in_the_observation() -> None:
    cfg = SensorConfig(upstream="http://127.0.0.1:9", window=60).validate()
    pipeline = Pipeline(cfg, SummaryAggregator(60), PrincipalHasher(b"test-key"))
    resp = json.dumps({"items": users(300)}).encode()
    ex = Exchange(request_id="r", method="GET", path="/api/users", query_string="", request_headers=CIMultiDict(),
                  peer_ip="81.2.69.160", status=200, started_at=time.time(),
                  response_headers=CIMultiDict({"Content-Type": "application/json"}), response_body=resp,
                  response_body_size=len(resp))  # fmt: skip
    obs, _ = pipeline.analyse(ex)
    assert (obs.records, obs.records_path, obs.records_partial) == (300, "$.items[*]", False)


# -- the engine --------------------------------------------------------------------------------------


def engine(requests: int = 100, seconds: float = 0.0) -> BehaviourEngine:
    policy = load_behaviour_policy(bundled_behaviour_path())
    policy = msgspec.structs.replace(
        policy, learning=msgspec.structs.replace(policy.learning, seconds=seconds, requests=requests)
    )
    return BehaviourEngine(policy, secret=b"test-secret")


def learn(e: BehaviourEngine, n: int = 600, *, low: int = 15, high: int = 25, seed: int = 1) -> float:
    """n list responses of ``low``-``high`` records from 30 clients, two per second."""
    rng = random.Random(seed)
    for i in range(n):
        obs, ex, leaves = make("GET", "/users", ts=T0 + i / 2, ip=f"10.0.0.{i % 30}",
                               response={"users": users(rng.randint(low, high))})  # fmt: skip
        e.observe(obs, ex, leaves)
    assert e.drain(T0 + n / 2 + 1) == []
    return T0 + n / 2 + 2


def dump_alerts(alerts: list[AlertEvent]) -> list[AlertEvent]:
    return [a for a in alerts if a.type == "API_ExcessiveDataExposure" and a.evidence["variant"] == "record_count"]


def test_a_bulk_dump_fires_with_its_evidence() -> None:
    e = engine()
    t = learn(e)  # about 20 records per response is usual
    obs, ex, leaves = make("GET", "/users", ts=t, ip="10.9.9.9", response={"users": users(5000)})
    e.observe(obs, ex, leaves)
    [alert] = dump_alerts(e.drain(t + 1))
    ev = alert.evidence
    assert alert.client.ip == "10.9.9.9" and alert.endpoint.path == "/users"
    assert ev["observed"] == 5000 and ev["path"] == "$.users[*]" and ev["observed_is_lower_bound"] is False
    assert 15 <= ev["baseline"] <= 25  # type: ignore[operator]
    assert 100 <= ev["threshold"] < 1000  # type: ignore[operator]
    assert ev["baseline_scope"] == "endpoint" and ev["unit"] == "records"
    assert "u42@example.com" not in json.dumps(ev)  # a path template, never values


def test_normal_variation_stays_quiet() -> None:
    e = engine()
    t = learn(e, low=5, high=60)
    rng = random.Random(7)
    for i in range(600):  # varying page sizes, now and then a larger page
        n = rng.randint(5, 60) if rng.random() < 0.9 else rng.randint(60, 95)
        obs, ex, leaves = make("GET", "/users", ts=t + i / 2, ip=f"10.0.1.{i % 40}", response={"users": users(n)})
        e.observe(obs, ex, leaves)
    assert dump_alerts(e.drain(t + 400)) == []


def test_a_lower_bound_from_a_truncated_dump_is_enough() -> None:
    e = engine()
    t = learn(e)
    obs, ex, _ = make("GET", "/users", ts=t, ip="10.9.9.8", response={"users": users(5000)}, walk=False)
    ex.response_body = ex.response_body[:65536]  # what the proxy keeps past inspect_bytes (the size is the full one)
    st = WalkStats()
    leaves = exchange_leaves(ex, stats=st)
    obs.records, obs.records_path, obs.records_partial = st.records, st.records_path, st.records_partial
    assert obs.records_partial and 100 < obs.records < 5000
    e.observe(obs, ex, leaves)
    [alert] = dump_alerts(e.drain(t + 1))
    assert alert.evidence["observed_is_lower_bound"] is True
    assert alert.evidence["observed"] == obs.records


def test_no_record_alerts_while_learning_nor_for_errors() -> None:
    e = engine(requests=5000, seconds=3600)
    t = learn(e)
    obs, ex, leaves = make("GET", "/users", ts=t, ip="10.9.9.9", response={"users": users(5000)})
    e.observe(obs, ex, leaves)
    assert dump_alerts(e.drain(t + 1)) == []  # still learning
    e = engine()
    t = learn(e)
    obs, ex, leaves = make("GET", "/users", ts=t, ip="10.9.9.9", status=500, response={"errors": users(5000)})
    e.observe(obs, ex, leaves)
    assert dump_alerts(e.drain(t + 1)) == []  # 2xx only


def test_a_power_users_long_list_is_normal_for_that_user() -> None:
    """The client's own history counts (like the payload baselines): a user whose list grew to 400
    orders over time is not dumping, while a client that usually gets 20 getting 430 is."""
    e = engine()
    t = learn(e)
    for i in range(80):  # among everybody else's ordinary lists
        obs, ex, leaves = make("GET", "/users", ts=t + i, ip="10.5.5.5", response={"users": users(20 + 5 * i)})
        e.observe(obs, ex, leaves)
        for k in range(4):
            obs, ex, leaves = make("GET", "/users", ts=t + i + 0.2 * (k + 1), ip=f"10.0.0.{(4 * i + k) % 30}",
                                   response={"users": users(15 + (i + k) % 10)})  # fmt: skip
            e.observe(obs, ex, leaves)
    assert dump_alerts(e.drain(t + 81)) == []
    t += 200
    e.drain(t)
    for ip in ("10.5.5.5", "10.0.0.3"):
        obs, ex, leaves = make("GET", "/users", ts=t, ip=ip, response={"users": users(430)})
        e.observe(obs, ex, leaves)
    assert [a.client.ip for a in dump_alerts(e.drain(t + 1))] == ["10.0.0.3"]


def test_dumps_do_not_become_the_baseline() -> None:
    e = engine()
    t = learn(e)
    for i in range(120):  # a dump every few seconds for four minutes, among normal traffic
        obs, ex, leaves = make("GET", "/users", ts=t + 2 * i, ip=f"10.0.0.{i % 30}", response={"users": users(20)})
        e.observe(obs, ex, leaves)
        if i % 3 == 0:
            obs, ex, leaves = make("GET", "/users", ts=t + 2 * i + 1, ip="10.9.9.9", response={"users": users(3000)})
            e.observe(obs, ex, leaves)
    alerts = dump_alerts(e.drain(t + 10_000, force=True))
    assert sum(a.count for a in alerts) == 40
