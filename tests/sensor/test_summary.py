"""SummaryAggregator: windows, counts, distributions, caps and overflow (pure core, no sockets)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pytest

from sensor.events import Batch, DataTypeSeen, EndpointSummary, SensorInfo, decode_batch, encode_batch
from sensor.observation import AuthEvidence, ClientInfo, JwtInfo, Observation, Route
from sensor.summary import JWT_FACTS, OVERFLOW_TEMPLATE, SummaryAggregator

T0 = 1_700_000_000.0  # a multiple of 10 and of 60
NONE = AuthEvidence(schemes=("none",))
JWT = AuthEvidence(schemes=("jwt",), principal="p1")


def obs(**kw: Any) -> Observation:
    base: dict[str, Any] = {
        "route": Route("shop", "/items/{id}"),
        "method": "GET",
        "status": 200,
        "auth": NONE,
        "client": ClientInfo("10.0.0.1", external=False),
        "scheme": "https",
        "timestamp": T0 + 1,
        "request_size": 100,
        "response_size": 1000,
        "latency_ms": 5.0,
    }
    base.update(kw)
    return Observation(**base)


def only(summaries: list[EndpointSummary]) -> EndpointSummary:
    assert len(summaries) == 1, summaries
    return summaries[0]


def ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def test_windows_are_aligned_to_the_epoch_and_drained_when_ended() -> None:
    agg = SummaryAggregator(10)
    for t in (T0 + 0.5, T0 + 9.9, T0 + 10.0, T0 + 25.0):
        agg.add(obs(timestamp=t))
    assert agg.open_windows() == 3

    assert agg.drain(T0 + 9.99) == []
    first = only(agg.drain(T0 + 10))
    assert (first.window_start, first.window_end) == (ts(T0), ts(T0 + 10))
    assert first.requests == 2
    assert (first.first_seen, first.last_seen) == (ts(T0 + 0.5), ts(T0 + 9.9))

    assert agg.drain(T0 + 19.99) == []
    second = only(agg.drain(T0 + 20))
    assert second.window_start == ts(T0 + 10)
    assert second.requests == 1

    # The current window only comes out when forced (shutdown).
    assert agg.drain(T0 + 25) == []
    third = only(agg.drain(T0 + 25, force=True))
    assert third.window_start == ts(T0 + 20)
    assert agg.open_windows() == 0
    assert agg.drain(T0 + 1000, force=True) == []
    assert agg.total_observations == 4


def test_one_summary_per_endpoint_key_in_stable_order_with_route_facts() -> None:
    agg = SummaryAggregator(60)
    agg.add(obs(route=Route("shop", "/items/{id}", name="getItem", from_spec=True)))
    agg.add(obs(route=Route("shop", "/items/{id}", name="getItem", from_spec=True)))
    agg.add(obs(route=Route("shop", "/items/{id}", name="deleteItem", from_spec=True), method="DELETE"))
    agg.add(obs(route=Route("admin", "/users")))
    out = agg.drain(T0 + 60)
    assert [(s.api, s.method, s.path, s.requests) for s in out] == [
        ("admin", "GET", "/users", 1),
        ("shop", "DELETE", "/items/{id}", 1),
        ("shop", "GET", "/items/{id}", 2),
    ]
    get_item = out[2]
    assert (get_item.name, get_item.from_spec) == ("getItem", True)
    assert (out[0].name, out[0].from_spec) == (None, False)


def test_distributions_match_numpy_on_known_data() -> None:
    rng = random.Random(7)
    latencies = [rng.uniform(0.1, 900.0) for _ in range(400)]
    req_sizes = [rng.randrange(0, 10_000) for _ in range(400)]
    resp_sizes = [rng.randrange(0, 1_000_000) for _ in range(400)]
    agg = SummaryAggregator(60, sample_cap=512)  # everything fits: percentiles are exact
    for lat, rq, rs in zip(latencies, req_sizes, resp_sizes, strict=True):
        agg.add(obs(latency_ms=lat, request_size=rq, response_size=rs))
    s = only(agg.drain(T0 + 60))
    for dist, data in ((s.latency_ms, latencies), (s.request_size, req_sizes), (s.response_size, resp_sizes)):
        p50, p95 = np.percentile(np.asarray(data, dtype=np.float64), [50, 95])
        assert dist.count == 400
        assert dist.p50 == pytest.approx(float(p50), rel=1e-12)
        assert dist.p95 == pytest.approx(float(p95), rel=1e-12)
        assert dist.max == max(data)


def test_reservoir_keeps_count_and_max_exact_and_is_deterministic() -> None:
    values = [float(i) for i in range(20_000)]
    random.Random(3).shuffle(values)

    def run() -> EndpointSummary:
        agg = SummaryAggregator(60, sample_cap=256)
        for v in values:
            agg.add(obs(latency_ms=v))
        return only(agg.drain(T0 + 60))

    a, b = run(), run()
    assert a.latency_ms == b.latency_ms  # deterministic RNG
    assert a.latency_ms.count == 20_000
    assert a.latency_ms.max == 19_999.0
    # A uniform sample of 256 from 0..19999: the median is near 10000 (loose bound, ~6 sigma).
    assert 8_000 < a.latency_ms.p50 < 12_000
    assert 17_000 < a.latency_ms.p95 < 19_999


def test_empty_distribution_when_all_sizes_are_zero_is_still_counted() -> None:
    agg = SummaryAggregator(60)
    agg.add(obs(status=0, request_size=0, response_size=0, latency_ms=0.0))
    s = only(agg.drain(T0 + 60))
    assert s.status_classes == {"none": 1}
    assert s.response_size.count == 1
    assert s.response_size.max == 0.0


def test_auth_and_status_counts() -> None:
    agg = SummaryAggregator(60)
    both = AuthEvidence(schemes=("subscription_key", "jwt"), principal="p2")
    empty = AuthEvidence(schemes=())
    cases = [
        (JWT, 200),
        (JWT, 201),
        (both, 204),
        (NONE, 200),
        (NONE, 200),
        (empty, 200),  # no schemes at all counts as no credential
        (NONE, 401),
        (NONE, 403),
        (JWT, 401),  # rejected *with* a credential: not an unauthenticated rejection
        (NONE, 404),
        (NONE, 500),
        (NONE, 0),  # no response
    ]
    for auth, status in cases:
        agg.add(obs(auth=auth, status=status))
    s = only(agg.drain(T0 + 60))
    assert s.requests == len(cases)
    assert s.status_classes == {"2xx": 6, "4xx": 4, "5xx": 1, "none": 1}
    assert s.auth_schemes == {"jwt": 4, "subscription_key": 1, "none": 8}
    assert s.authenticated_success == 3
    assert s.unauthenticated_success == 3
    assert s.unauthenticated_rejected == 2


NOW_S = int(T0 + 1)  # the observations' timestamp
HOUR = 3600


def _jwt(**kw: Any) -> AuthEvidence:
    return AuthEvidence(schemes=("jwt",), principal="p1", jwt=JwtInfo(**kw))


@pytest.mark.parametrize(
    ("info", "status", "facts"),
    [
        pytest.param({"alg": "RS256", "iat": NOW_S, "exp": NOW_S + HOUR}, 200, {}, id="rs256-short-lived"),
        pytest.param({"alg": "none", "unsigned": True, "iat": NOW_S, "exp": NOW_S + HOUR}, 200,
                     {"unsigned": 1, "alg_none": 1, "unsigned_accepted": 1}, id="alg-none-accepted"),
        pytest.param({"alg": "NONE", "unsigned": True, "iat": NOW_S, "exp": NOW_S + HOUR}, 401,
                     {"unsigned": 1, "alg_none": 1}, id="alg-none-rejected"),
        pytest.param({"alg": "RS256", "unsigned": True, "iat": NOW_S, "exp": NOW_S + HOUR}, 204,
                     {"unsigned": 1, "unsigned_accepted": 1}, id="empty-signature-accepted"),
        pytest.param({"alg": "HS256", "iat": NOW_S, "exp": NOW_S + HOUR}, 200, {"symmetric": 1}, id="hs256"),
        pytest.param({"alg": "HS512"}, 403, {"symmetric": 1, "no_exp": 1}, id="hs512-without-exp"),
        pytest.param({"alg": "HS256", "unsigned": True, "exp": NOW_S + HOUR}, 500, {"unsigned": 1},
                     id="hs256-header-but-unsigned-is-not-symmetric"),
        pytest.param({"alg": "ES256", "iat": NOW_S, "exp": NOW_S + 48 * HOUR}, 200, {"long_lifetime": 1},
                     id="48h-lifetime"),
        pytest.param({"alg": "ES256", "iat": NOW_S, "exp": NOW_S + 24 * HOUR}, 200, {}, id="exactly-24h"),
        pytest.param({"alg": "ES256", "exp": NOW_S + 25 * HOUR}, 200, {"long_lifetime": 1},
                     id="no-iat-valid-for-over-24h"),
        pytest.param({"alg": "ES256", "exp": NOW_S + 23 * HOUR}, 200, {}, id="no-iat-valid-for-under-24h"),
        pytest.param({"alg": "RS256", "iat": NOW_S - 2 * HOUR, "exp": NOW_S - HOUR, "expired": True}, 401,
                     {"expired": 1}, id="expired"),
        pytest.param({"alg": "RSA-OAEP"}, 200, {}, id="jwe-claims-unreadable"),
        pytest.param({"alg": None, "malformed": True}, 401, {}, id="malformed"),
        pytest.param({"alg": "RS256", "unsigned": True, "malformed": True}, 200,
                     {"unsigned": 1, "unsigned_accepted": 1}, id="header-payload-only"),
    ],
)
def test_jwt_facts(info: dict[str, Any], status: int, facts: dict[str, int]) -> None:
    agg = SummaryAggregator(60)
    agg.add(obs(auth=_jwt(**info), status=status))
    s = only(agg.drain(T0 + 60))
    assert s.jwt_facts == {"jwt": 1, **facts}
    assert set(s.jwt_facts) <= set(JWT_FACTS)
    assert list(s.jwt_facts) == sorted(s.jwt_facts)


def test_jwt_facts_add_up_and_stay_empty_without_tokens() -> None:
    agg = SummaryAggregator(60)
    none_alg = _jwt(alg="none", unsigned=True)
    for auth, status in [(none_alg, 200), (none_alg, 401), (_jwt(alg="HS256"), 200), (JWT, 200), (NONE, 200)]:
        agg.add(obs(auth=auth, status=status))
    agg.add(obs(route=Route("shop", "/plain"), auth=JWT))  # a JWT scheme without decoded info
    items, plain = agg.drain(T0 + 60)
    assert plain.path == "/plain" and plain.jwt_facts == {}
    assert items.jwt_facts == {
        "alg_none": 2, "jwt": 3, "no_exp": 3, "symmetric": 1, "unsigned": 2, "unsigned_accepted": 1
    }
    # The field travels on the wire and old batches without it still decode.
    batch = Batch(
        batch_id="x",
        sensor=SensorInfo(id="s", name="s", version="0", mode="inline", started_at=ts(T0)),
        created_at=ts(T0),
        seq=1,
        summaries=[items],
    )
    assert decode_batch(encode_batch(batch)).summaries[0].jwt_facts == items.jwt_facts
    legacy = msgspec.json.decode(encode_batch(batch))
    del legacy["summaries"][0]["jwt_facts"]  # a batch from a sensor that predates the field
    assert decode_batch(msgspec.json.encode(legacy)).summaries[0].jwt_facts == {}


def test_external_plaintext_and_clients() -> None:
    agg = SummaryAggregator(60, distinct_cap=3)
    agg.add(obs(client=ClientInfo("203.0.113.9", external=True), timestamp=T0 + 5, scheme="http"))
    agg.add(obs(client=ClientInfo("203.0.113.9", external=True), timestamp=T0 + 3))
    agg.add(obs(client=ClientInfo("10.0.0.1", external=False), timestamp=T0 + 9, scheme="http"))
    agg.add(obs(client=ClientInfo("10.0.0.2", external=False), timestamp=T0 + 9))
    s = only(agg.drain(T0 + 60))
    assert s.external_requests == 2
    assert s.last_external == ts(T0 + 5)
    assert s.plaintext_requests == 2
    assert (s.distinct_clients, s.distinct_clients_capped) == (3, False)

    for i in range(10):
        agg.add(obs(client=ClientInfo(f"10.1.0.{i}", external=False)))
    s = only(agg.drain(T0 + 60))
    assert (s.distinct_clients, s.distinct_clients_capped) == (3, True)
    assert s.external_requests == 0
    assert s.last_external is None


def test_params_are_counted_and_capped() -> None:
    agg = SummaryAggregator(60, max_params=2)
    agg.add(obs(params=(("query", "id"), ("body", "name"))))
    agg.add(obs(params=(("query", "id"), ("query", "debug"))))  # third distinct: over the cap
    s = only(agg.drain(T0 + 60))
    assert {(p.location, p.name): p.count for p in s.params} == {("query", "id"): 2, ("body", "name"): 1}
    assert agg.dropped_params == 1


def test_data_types_merge_by_type_location_path_status() -> None:
    agg = SummaryAggregator(60, max_data_types=3)
    card = DataTypeSeen("credit_card", "response_body", "$.card", "2xx", count=2)
    agg.add(obs(data_types=(card,)))
    agg.add(obs(data_types=(card, DataTypeSeen("email", "request_body", "$.email"))))
    # A response finding without a status class takes the observation's.
    agg.add(obs(status=500, data_types=(DataTypeSeen("credit_card", "response_body", "$.card"),)))
    # Over the cap (3 distinct keys already): counted as dropped.
    agg.add(obs(data_types=(DataTypeSeen("iban", "query", "iban"),)))
    s = only(agg.drain(T0 + 60))
    got = {(d.type, d.location, d.path, d.status_class): d.count for d in s.data_types}
    assert got == {
        ("credit_card", "response_body", "$.card", "2xx"): 4,
        ("email", "request_body", "$.email", ""): 1,
        ("credit_card", "response_body", "$.card", "5xx"): 1,
    }
    assert agg.dropped_data_types == 1


def test_endpoint_cap_folds_into_overflow_key_and_keeps_totals() -> None:
    agg = SummaryAggregator(60, max_endpoints=3)
    total = 0
    for i in range(10):
        for method in ("GET", "POST"):
            for _ in range(i + 1):
                agg.add(obs(route=Route("shop", f"/p{i}"), method=method))
                total += 1
    # A second window gets its own budget.
    agg.add(obs(route=Route("shop", "/p9"), timestamp=T0 + 61))
    out = agg.drain(T0 + 60)
    regular = [s for s in out if s.path != OVERFLOW_TEMPLATE]
    overflow = [s for s in out if s.path == OVERFLOW_TEMPLATE]
    assert len(regular) == 3
    assert [(s.method, s.path) for s in overflow] == [("GET", OVERFLOW_TEMPLATE), ("POST", OVERFLOW_TEMPLATE)]
    assert sum(s.requests for s in out) == total
    assert agg.overflow_observations == total - sum(s.requests for s in regular)
    assert all(s.name is None and not s.from_spec for s in overflow)
    nxt = only(agg.drain(T0 + 120))
    assert (nxt.path, nxt.requests) == ("/p9", 1)
    assert agg.total_observations == total + 1


def test_overflow_keys_are_bounded_too() -> None:
    agg = SummaryAggregator(60, max_endpoints=1)
    total = 0
    for i in range(500):  # 500 distinct client-chosen methods
        agg.add(obs(route=Route("shop", f"/p{i}"), method=f"M{i}"))
        total += 1
    out = agg.drain(T0 + 60)
    assert len(out) <= 1 + 64 + 1
    assert sum(s.requests for s in out) == total
    assert any(s.api == "{overflow}" for s in out)


def test_take_then_summarise_equals_drain_and_encodes_on_the_wire() -> None:
    def fill(agg: SummaryAggregator) -> None:
        for i in range(50):
            agg.add(obs(route=Route("shop", f"/p{i % 5}"), latency_ms=float(i), timestamp=T0 + i))

    a, b = SummaryAggregator(60), SummaryAggregator(60)
    fill(a)
    fill(b)
    closed = b.take(T0 + 60)
    assert len(closed) == 5
    b.add(obs(timestamp=T0 + 1))  # a late observation for the taken window starts a fresh one
    assert b.summarise(closed) == a.drain(T0 + 60)
    assert only(b.drain(T0 + 60)).requests == 1

    fill(a)
    summaries = a.drain(T0 + 60)
    batch = Batch(
        batch_id="x",
        sensor=SensorInfo(id="s", name="s", version="0", mode="inline", started_at=ts(T0)),
        created_at=ts(T0),
        seq=1,
        summaries=summaries,
    )
    assert decode_batch(encode_batch(batch)).summaries == summaries


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        SummaryAggregator(0)
    with pytest.raises(ValueError):
        SummaryAggregator(60, sample_cap=0)


def test_observation_is_not_mutated() -> None:
    o = obs(data_types=(DataTypeSeen("email", "response_body", "$.e"),))
    before = dataclasses.replace(o)
    agg = SummaryAggregator(60)
    agg.add(o)
    assert o == before
    assert o.data_types[0].status_class == ""
