"""The sensor's side of the fleet view: distinct-value sketches on epoch-aligned windows, shipped with
the summaries, hashed the same way in every replica."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import msgspec
import numpy as np
from multidict import CIMultiDict

from sensor.behaviour import BehaviourEngine
from sensor.behaviour.policy import bundled_behaviour_path, load_behaviour_policy
from sensor.behaviour.sketches import KeyedHash, hll_estimates
from sensor.behaviour.synthetic import make
from sensor.config import SensorConfig
from sensor.events import Batch, SensorInfo, decode_batch, encode_batch
from sensor.evidence import PrincipalHasher
from sensor.exchange import Exchange
from sensor.pipeline import Pipeline
from sensor.summary import SummaryAggregator

WINDOW = 60.0
T0 = 1_767_225_600.0 + 17.0  # 17 s into an aligned minute
EP = ("shop", "GET", "/orders/{id}")


def engine() -> BehaviourEngine:
    policy = load_behaviour_policy(bundled_behaviour_path())
    return BehaviourEngine(
        msgspec.structs.replace(policy, distinct=msgspec.structs.replace(policy.distinct, window_seconds=WINDOW)),
        secret=b"replica secret",
    )


def feed(e: BehaviourEngine, ids: range, ts: float) -> None:
    for i in ids:
        obs, ex, leaves = make("GET", f"/orders/{i}", template="/orders/{id}", ts=ts)
        e.observe(obs, ex, leaves)


def take(e: BehaviourEngine) -> list[Any]:
    return e.take_param_sketches({EP}, per_endpoint=32, limit=1024)


def test_the_shared_value_hash_is_the_same_in_every_process() -> None:
    code = (
        "from sensor.behaviour.sketches import KeyedHash; h = KeyedHash(b'replica secret'); "
        "print(h.shared('order-42'), h.shared('\\u00e9t\\u00e9'), h.shared_id)"
    )
    out = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
           for _ in range(2)}  # fmt: skip
    h = KeyedHash(b"replica secret")
    assert out == {f"{h.shared('order-42')} {h.shared('été')} {h.shared_id}\n"}
    assert KeyedHash(b"another").shared("order-42") != h.shared("order-42")
    assert KeyedHash(b"another").shared_id != h.shared_id


def test_sketches_are_epoch_aligned_cumulative_and_shipped_once_per_change() -> None:
    e = engine()
    feed(e, range(60), T0)  # the sketch exists from the endpoint's 50th request
    e.drain(T0 + 1)
    ((key, pkey, start, regs1),) = take(e)
    assert (key, pkey, start) == (EP, ("path", "{id}"), T0 - 17.0) and len(regs1) == 1024
    assert 5 <= hll_estimates([regs1])[0] <= 15  # ids 50..59 went in
    e.drain(T0 + 2)
    assert take(e) == []  # untouched since: nothing to ship
    feed(e, range(100, 130), T0 + 5)
    e.drain(T0 + 6)
    ((_, _, start2, regs2),) = take(e)
    assert start2 == start
    assert np.all(np.frombuffer(regs2, np.uint8) >= np.frombuffer(regs1, np.uint8))  # cumulative
    assert 35 <= hll_estimates([regs2])[0] <= 45


def test_a_closed_window_ships_its_final_registers_and_the_next_starts_aligned() -> None:
    e = engine()
    feed(e, range(60), T0)
    e.drain(T0 + 1)
    take(e)
    feed(e, range(200, 220), T0 + 30)  # still the first window, not drained yet
    feed(e, range(300, 305), T0 + 50)  # 50 + 17 = 67 s: the next window; these must not join the first
    e.drain(T0 + 51)
    shipped = sorted(take(e), key=lambda s: s[2])
    assert [s[2] for s in shipped] == [T0 - 17.0, T0 - 17.0 + WINDOW]
    first, second = (hll_estimates([s[3]])[0] for s in shipped)
    assert 25 <= first <= 35 and 4 <= second <= 6


def test_take_respects_the_caps_and_keeps_the_rest_for_later() -> None:
    e = engine()
    for n in range(3):  # three parameters of one endpoint
        for i in range(60):
            obs, ex, leaves = make("GET", "/search", ts=T0, query=f"q{n}=v{i}")
            e.observe(obs, ex, leaves)
    e.drain(T0 + 1)
    key = ("shop", "GET", "/search")
    assert e.take_param_sketches({EP}, per_endpoint=32, limit=1024) == []  # not this endpoint: they wait
    assert len(e.take_param_sketches({key}, per_endpoint=2, limit=1024)) == 2
    assert len(e.take_param_sketches({key}, per_endpoint=2, limit=1024)) == 1
    assert e.take_param_sketches({key}, per_endpoint=2, limit=1024) == []


def _exchange(i: int, ts: float) -> Exchange:
    return Exchange(
        request_id=f"r{i}", method="GET", path=f"/api/orders/{1000 + i}", query_string="",
        request_headers=CIMultiDict({"X-Forwarded-For": "81.2.69.160"}), peer_ip="127.0.0.1", status=200,
        started_at=ts, response_headers=CIMultiDict({"Content-Type": "application/json"}),
    )  # fmt: skip


def test_the_pipeline_puts_sketches_on_the_summaries_and_they_survive_the_wire() -> None:
    cfg = SensorConfig(upstream="http://127.0.0.1:9", trusted_proxies=["127.0.0.1/32"], window=1).validate()
    aggregator = SummaryAggregator(1.0)
    pipeline = Pipeline(cfg, aggregator, PrincipalHasher(b"k"), secret=b"replica secret")
    now = time.time()
    for i in range(80):
        pipeline.submit(_exchange(i, now))
    summaries = aggregator.drain(now + 2)
    pipeline.drain_alerts(now + 2)
    assert pipeline.attach_param_sketches(summaries) == 1
    (summary,) = summaries
    (sketch,) = summary.param_sketches
    width = pipeline.behaviour.policy.distinct.window_seconds
    assert (sketch.location, sketch.name, sketch.window_seconds) == ("path", "{id}", width)
    assert sketch.window_start.timestamp() == now - now % width
    assert sketch.hash_id == KeyedHash(b"replica secret").shared_id
    info = SensorInfo(id="s", name="s", version="0", mode="inline", started_at=summary.window_start)
    batch = Batch(batch_id="b", sensor=info, created_at=summary.window_end, seq=1, summaries=summaries)
    wire = encode_batch(batch)
    assert b'"registers":"' in wire  # base64 in JSON
    assert decode_batch(wire).summaries[0].param_sketches == [sketch]
    assert 25 <= hll_estimates([sketch.registers])[0] <= 35  # requests 50..79 went into the sketch
