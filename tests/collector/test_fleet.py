"""The fleet view: population detections over the summed / merged windows of all sensors."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from collector.fleet import (
    FleetParams,
    WindowRow,
    distributed_enumerations,
    population_spikes,
    rows_from_summaries,
    split_evenly,
)
from sensor.behaviour.sketches import Hll, KeyedHash
from sensor.events import EndpointSummary

EP = ("shop", "GET", "/products")
W = 60.0


def fleet_rows(per_window: list[dict[str, int]], sensors: int) -> list[WindowRow]:
    rows: list[WindowRow] = []
    for i, total in enumerate(per_window):
        for part in split_evenly(total, sensors):
            rows.append((EP, 1_700_000_000.0 + i * W, part))
    return rows


def benign(n: int, seed: int = 1) -> list[dict[str, int]]:
    rng = random.Random(seed)
    return [{"2xx": rng.randint(380, 420), "4xx": rng.randint(5, 15)} for _ in range(n)]


@pytest.mark.parametrize("sensors", [1, 2, 4, 8])
def test_population_spike_is_the_same_whatever_the_number_of_replicas(sensors: int) -> None:
    windows = [*benign(30), {"2xx": 4000, "4xx": 10}, *benign(5, seed=2)]
    found = population_spikes(fleet_rows(windows, sensors))
    assert [(f.scope, f.window_start) for f in found] == [("2xx", 1_700_000_000.0 + 30 * W)]
    f = found[0]
    assert f.type == "API_PopulationSpikeInAPITraffic"
    assert f.observed == 4000
    assert f.sensors == sensors
    assert f.threshold < f.observed and 380 <= f.baseline <= 420
    assert set(f.evidence()) >= {"observed", "baseline", "threshold", "scope", "sensors"}


def test_a_spike_split_over_replicas_is_invisible_per_replica_but_seen_by_the_fleet() -> None:
    # 4x the baseline spread over 4 replicas: each one sees its usual ~100 + 300 more; below the
    # per-sensor floor of min_requests=500, yet the fleet total of 1,600 is a spike.
    params = FleetParams(min_requests=500)
    windows = [*benign(30), {"2xx": 2000, "4xx": 10}]
    rows = fleet_rows(windows, 4)
    one_replica = [r for i, r in enumerate(rows) if i % 4 == 0]
    assert population_spikes(one_replica, params) == []
    assert [f.observed for f in population_spikes(rows, params)] == [2000]


def test_benign_series_with_a_slow_daily_ramp_stays_quiet() -> None:
    windows = [{"2xx": int(200 + 3 * i)} for i in range(200)]
    assert population_spikes(fleet_rows(windows, 3)) == []


def test_no_finding_before_min_windows_of_history() -> None:
    assert population_spikes(fleet_rows([{"2xx": 10}, {"2xx": 5000}], 2)) == []


def test_rows_from_summaries() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    s = EndpointSummary(
        api="shop", method="GET", path="/x", window_start=start, window_end=start, first_seen=start,
        last_seen=start, requests=3, status_classes={"2xx": 3},
    )  # fmt: skip
    assert rows_from_summaries([s]) == [(("shop", "GET", "/x"), start.timestamp(), {"2xx": 3})]


def _sketch(values: range, hasher: KeyedHash) -> bytes:
    h = Hll(10)
    for v in values:
        h.add(hasher.fast(str(v)))
    return bytes(h.regs)


def test_distributed_enumeration_merges_sensor_sketches() -> None:
    hasher = KeyedHash(b"k")
    rows = []
    t0 = 1_700_000_000.0
    # Three quiet windows: each of 2 sensors sees the same ~150 ids (users reload their objects).
    for w in range(3):
        for _sensor in range(2):
            rows.append((EP, "path:{id}", t0 + w * 1200, _sketch(range(150), hasher)))
    # Attack window: 3 sensors each see a different 400 ids: 1,200 distinct overall, while no
    # single sensor crosses the 500 floor.
    for s in range(3):
        rows.append((EP, "path:{id}", t0 + 3 * 1200, _sketch(range(10_000 + s * 400, 10_000 + (s + 1) * 400), hasher)))
    found = distributed_enumerations(rows)
    assert len(found) == 1
    f = found[0]
    assert f.type == "API_DistributedParameterEnumeration"
    assert f.sensors == 3 and f.scope == "path:{id}"
    assert 1100 < f.observed < 1300  # HLL p=10: ~3 % standard error
    assert distributed_enumerations([r for r in rows if r[3] is rows[-1][3] or r[2] < t0 + 3600]) == []
