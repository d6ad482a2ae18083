"""The fleet view wired into the collector: status classes and parameter sketches stored per sensor,
the periodic job that sums / merges every sensor's windows, and findings raised once as alerts.

Every test runs on real SQLite and real PostgreSQL (the ``store`` / ``db_url`` fixtures)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from collector.fleet import split_evenly
from collector.fleet_jobs import FleetConfig, run_once
from collector.settings import ConfigError, Role, load_settings
from collector.store import AlertFilter, Store
from collector.store import schema as t
from collector.store.alert_store import alert_history
from collector.store.ids import endpoint_id
from collector.store.migrations import LATEST_VERSION, current_version
from sensor.behaviour.sketches import Hll, KeyedHash
from sensor.events import ParamSketch, encode_batch
from tests.collector.conftest import bearer
from tests.collector.factories import batch, summary

CONFIG = FleetConfig.load()  # the bundled policy: min_population 100, factor 4, distributed_min 500
BUCKET = CONFIG.bucket_seconds
WIDTH = CONFIG.distinct_seconds
EID = endpoint_id("shop", "GET", "/users/{id}")


def _now() -> datetime:
    return datetime.now(UTC)


def _aligned(width: float, now: datetime | None = None) -> datetime:
    ts = (now or _now()).timestamp()
    return datetime.fromtimestamp(ts - ts % width, UTC)


async def _alerts(store: Store, type_: str) -> list[Any]:
    return (await store.list_alerts(AlertFilter(type=type_))).items


async def _marks(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        return list(await conn.execute(sa.select(t.fleet_marks)))


# --- population: per-sensor windows with status classes, summed by the job --------------------------


def _population_batches(totals: list[dict[str, int]], sensors: int, end: datetime) -> list[Any]:
    """One batch per sensor: window i of ``totals`` split evenly over the sensors, the last one ending
    at ``end``."""
    per_sensor: list[list[Any]] = [[] for _ in range(sensors)]
    for i, total in enumerate(totals):
        at = end - timedelta(seconds=(len(totals) - 1 - i) * BUCKET)
        for s, part in enumerate(split_evenly(total, sensors)):
            per_sensor[s].append(summary(requests=sum(part.values()), at=at, status_classes=part))
    return [batch(ss, sensor_id=f"replica-{s}") for s, ss in enumerate(per_sensor)]


def _series(spike: int | None) -> list[dict[str, int]]:
    windows = [{"2xx": 57 + i % 7, "4xx": 2} for i in range(30)]
    return [*windows, {"2xx": spike, "4xx": 2}] if spike is not None else windows


async def test_a_spike_split_over_three_replicas_becomes_one_fleet_alert(store: Store) -> None:
    end = _aligned(BUCKET)  # the last window ended at the start of this minute
    first, *others = _population_batches(_series(270), 3, end)
    # 90 requests per replica in the spike window: under min_population (100), so no replica alone fires.
    assert await store.apply_batch(first)
    assert (await run_once(store, CONFIG)).population_findings == 0
    for b in others:
        assert await store.apply_batch(b)
    run = await run_once(store, CONFIG)
    assert (run.population_findings, run.raised) == (1, 1)
    (alert,) = await _alerts(store, "API_PopulationSpikeInAPITraffic")
    assert (alert.method, alert.path, alert.client_ip, alert.principal) == ("GET", "/users/{id}", "", "")
    ev = alert.evidence
    assert ev["fleet"] is True and ev["sensors"] == 3 and ev["status_class"] == "2xx"
    assert ev["observed"] == 270 and ev["threshold"] < 270 and 55 < ev["baseline"] < 65
    assert alert.first_seen == end - timedelta(seconds=BUCKET) and alert.count == 1
    assert [h.to_status for h in await alert_history(store, alert.id)] == ["active"]  # created like any other
    # A second pass finds the mark and raises nothing more.
    assert (await run_once(store, CONFIG)).raised == 0
    (again,) = await _alerts(store, "API_PopulationSpikeInAPITraffic")
    assert again.count == 1 and len(await _marks(store)) == 1


def _windowed(total: dict[str, int], end: datetime, width: float) -> Any:
    """One sensor window of ``width`` seconds ending at ``end`` (the factory's are 60 s)."""
    s = summary(requests=sum(total.values()), at=end, status_classes=total)
    start = end - timedelta(seconds=width)
    return msgspec.structs.replace(s, window_start=start, first_seen=start)


async def test_sensors_with_shorter_windows_add_up_into_the_policy_bucket(store: Store) -> None:
    """One replica ships 60 s windows, another 30 s windows (``--window 30``): the job adds the short
    ones up per bucket, so the fleet series is the same as with equal windows; the spike fires once,
    with both replicas counted once each."""
    end = _aligned(BUCKET)
    long_windows, short_windows = [], []
    for i, total in enumerate(_series(270)):
        at = end - timedelta(seconds=(len(_series(270)) - 1 - i) * BUCKET)
        a, b = split_evenly(total, 2)
        long_windows.append(_windowed(a, at, BUCKET))
        first, second = split_evenly(b, 2)  # the 30 s replica's two halves of the same minute
        short_windows += [_windowed(first, at - timedelta(seconds=BUCKET / 2), BUCKET / 2),
                          _windowed(second, at, BUCKET / 2)]
    assert await store.apply_batch(batch(long_windows, sensor_id="replica-60s"))
    assert await store.apply_batch(batch(short_windows, sensor_id="replica-30s"))
    run = await run_once(store, CONFIG)
    assert (run.population_findings, run.raised, run.windows_too_wide) == (1, 1, 0)
    (alert,) = await _alerts(store, "API_PopulationSpikeInAPITraffic")
    assert alert.evidence["observed"] == 270 and alert.evidence["sensors"] == 2
    assert 55 < alert.evidence["baseline"] < 65  # the short windows did not halve the baseline


async def test_windows_wider_than_the_bucket_are_left_out_and_counted(store: Store) -> None:
    end = _aligned(2 * BUCKET)
    wide = [_windowed({"2xx": 500}, end - timedelta(seconds=2 * BUCKET * i), 2 * BUCKET) for i in range(5)]
    assert await store.apply_batch(batch(wide, sensor_id="replica-120s"))
    run = await run_once(store, CONFIG)
    assert (run.population_findings, run.windows_too_wide) == (0, 5)


async def test_flat_traffic_from_three_replicas_raises_nothing(store: Store) -> None:
    for b in _population_batches(_series(None), 3, _aligned(BUCKET)):
        assert await store.apply_batch(b)
    run = await run_once(store, CONFIG)
    assert (run.population_findings, run.enumeration_findings, run.raised) == (0, 0, 0)
    assert await _alerts(store, "API_PopulationSpikeInAPITraffic") == []


async def test_a_spike_long_ago_is_history_not_an_alert(store: Store) -> None:
    # The same spike, an hour old: inside the 2-hour look-back, outside the 10-window recency.
    for b in _population_batches(_series(270), 3, _aligned(BUCKET) - timedelta(hours=1)):
        assert await store.apply_batch(b)
    assert (await run_once(store, CONFIG)).raised == 0


async def test_status_classes_of_a_window_split_across_batches_add_up(store: Store) -> None:
    at = _aligned(BUCKET)
    assert await store.apply_batch(batch([summary(requests=3, at=at, status_classes={"2xx": 3})]))
    assert await store.apply_batch(batch([summary(requests=3, at=at, status_classes={"2xx": 2, "4xx": 1})]))
    async with store.engine.connect() as conn:
        (row,) = list(await conn.execute(sa.select(t.endpoint_windows)))
    assert row.requests == 6 and row.status_classes == {"2xx": 5, "4xx": 1}


# --- distributed enumeration: per-sensor sketches, merged by the job ----------------------------------


HASHER = KeyedHash(b"the replicas' shared principal secret")


def _registers(values: range, hasher: KeyedHash = HASHER) -> bytes:
    h = Hll(10)
    for v in values:
        h.add(hasher.shared(str(v)))
    return bytes(h.regs)


def _sketch(start: datetime, registers: bytes, hash_id: str = HASHER.shared_id) -> ParamSketch:
    return ParamSketch(
        location="path", name="{id}", window_start=start, window_seconds=WIDTH, registers=registers, hash_id=hash_id
    )


def _enumeration_batches(sensors: int, hashers: list[KeyedHash] | None = None) -> list[Any]:
    """Windows W0 (the partial warm-up), W1, W2 (every replica sees the same 150 ids) and the current
    window W3, where each replica sees 400 ids of its own: 1,200 fleet-wide."""
    current = _aligned(WIDTH)
    out = []
    for s in range(sensors):
        hasher = hashers[s] if hashers else HASHER
        sketches = [
            _sketch(current - timedelta(seconds=k * WIDTH), _registers(range(150), hasher), hasher.shared_id)
            for k in (3, 2, 1)
        ]
        attack = range(10_000 + s * 400, 10_000 + (s + 1) * 400)
        sketches.append(_sketch(current, _registers(attack, hasher), hasher.shared_id))
        at = _aligned(BUCKET)
        out.append(batch([summary(at=at, param_sketches=sketches)], sensor_id=f"replica-{s}"))
    return out


async def test_a_distributed_enumeration_under_every_replicas_floor_is_seen_by_the_fleet(store: Store) -> None:
    first, *others = _enumeration_batches(3)
    assert await store.apply_batch(first)
    assert (await run_once(store, CONFIG)).enumeration_findings == 0  # 400 < distributed_min 500
    for b in others:
        assert await store.apply_batch(b)
    run = await run_once(store, CONFIG)
    assert (run.enumeration_findings, run.raised) == (1, 1)
    (alert,) = await _alerts(store, "API_DistributedParameterEnumeration")
    ev = alert.evidence
    assert ev["fleet"] is True and ev["sensors"] == 3 and ev["variant"] == "all_values"
    assert (ev["location"], ev["param"], ev["scope"]) == ("path", "{id}", "path:{id}")
    assert 1100 < ev["observed"] < 1300 and 550 < ev["threshold"] < 650  # 4 x the ~150 ids of W1/W2
    assert ev["window_seconds"] == WIDTH and alert.first_seen == _aligned(WIDTH)
    assert (await run_once(store, CONFIG)).raised == 0
    assert [a.count for a in await _alerts(store, "API_DistributedParameterEnumeration")] == [1]


async def test_sketches_of_different_hash_keys_do_not_merge(store: Store) -> None:
    # Replicas that do not share a principal secret hash values differently: their registers would
    # count the same id once per replica, so the job keeps them apart (and, here, finds nothing).
    hashers = [KeyedHash(f"secret-{s}".encode()) for s in range(3)]
    for b in _enumeration_batches(3, hashers):
        assert await store.apply_batch(b)
    assert (await run_once(store, CONFIG)).enumeration_findings == 0


async def test_a_re_shipped_sketch_keeps_the_register_wise_max(store: Store) -> None:
    start = _aligned(WIDTH)
    low, high = bytearray(1024), bytearray(1024)
    low[0], low[1], high[1], high[2] = 5, 9, 3, 7
    at = _aligned(BUCKET)
    assert await store.apply_batch(batch([summary(at=at, param_sketches=[_sketch(start, bytes(low))])]))
    # Re-shipped (cumulative) later, and twice within one batch: max-merge everywhere.
    twice = [summary(at=at + timedelta(seconds=BUCKET), param_sketches=[_sketch(start, bytes(high))]),
             summary(at=at + timedelta(seconds=2 * BUCKET), param_sketches=[_sketch(start, bytes(low))])]  # fmt: skip
    assert await store.apply_batch(batch(twice))
    async with store.engine.connect() as conn:
        (row,) = list(await conn.execute(sa.select(t.param_sketches)))
    assert bytes(row.registers)[:3] == bytes([5, 9, 7]) and not any(bytes(row.registers)[3:])
    assert (row.endpoint_id, row.sensor_id, row.location, row.name) == (EID, "sensor-1", "path", "{id}")
    assert row.window_start == start and row.hash_id == HASHER.shared_id
    # Another sensor's sketch of the same window is its own row.
    assert await store.apply_batch(batch([summary(at=at, param_sketches=[_sketch(start, bytes(low))])],
                                         sensor_id="sensor-2"))  # fmt: skip
    async with store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.param_sketches)) == 2


# --- once only: two passes, two collectors -----------------------------------------------------------


async def test_two_collectors_running_the_job_at_once_raise_each_finding_once(db_url: str) -> None:
    stores = [await Store.open(db_url), await Store.open(db_url)]  # two collector replicas, one database
    try:
        for b in [*_population_batches(_series(270), 3, _aligned(BUCKET)), *_enumeration_batches(3)]:
            assert await stores[0].apply_batch(b)
        for _ in range(3):
            runs = await asyncio.gather(*(run_once(s, CONFIG) for s in stores))
            assert all((r.population_findings, r.enumeration_findings) == (1, 1) for r in runs)
        alerts = (await stores[1].list_alerts()).items
        assert sorted((a.type, a.count) for a in alerts) == [
            ("API_DistributedParameterEnumeration", 1),
            ("API_PopulationSpikeInAPITraffic", 1),
        ]
        assert len(await _marks(stores[0])) == 2
    finally:
        for s in stores:
            await s.close()


async def test_the_sweep_prunes_sketches_and_marks_past_the_look_back(store: Store) -> None:
    from collector import posture_jobs

    for b in _enumeration_batches(1):
        assert await store.apply_batch(b)
    async with store.engine.begin() as conn:
        await conn.execute(t.fleet_marks.insert().values(
            type="API_DistributedParameterEnumeration", endpoint_id=EID, scope="path:{id}",
            window_start=_now() - timedelta(days=2), created_at=_now(),
        ))  # fmt: skip
    later = _aligned(WIDTH) + CONFIG.horizon - timedelta(seconds=WIDTH) * 1.5  # the two oldest windows are out
    result = await posture_jobs.sweep(store, 14, later, fleet_horizon=CONFIG.horizon)
    assert result["pruned_fleet_rows"] == 3  # W0 and W1 of the one sensor, and the old mark
    async with store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.param_sketches)) == 2
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.fleet_marks)) == 0


# --- migration and ingest validation ------------------------------------------------------------------


async def test_a_version_4_database_migrates_to_the_fleet_view_and_keeps_its_data(db_url: str) -> None:
    old = await Store.open(db_url)
    try:
        assert await old.apply_batch(batch([summary(requests=7, at=_aligned(BUCKET) - timedelta(minutes=3))]))
        async with old.engine.begin() as conn:  # back to what a version-4 collector left behind
            await conn.execute(sa.text("DROP INDEX ix_endpoint_windows_start"))
            await conn.execute(sa.text("ALTER TABLE endpoint_windows DROP COLUMN status_classes"))
            await conn.run_sync(t.fleet_marks.drop)
            await conn.run_sync(t.param_sketches.drop)
            await conn.run_sync(t.dashboard_sessions.drop)  # version 6
            await conn.execute(t.schema_version.delete().where(t.schema_version.c.version >= 5))
            assert await current_version(conn) == 4
    finally:
        await old.close()
    store = await Store.open(db_url)
    try:
        async with store.engine.connect() as conn:
            assert await current_version(conn) == LATEST_VERSION >= 5
            (row,) = list(await conn.execute(sa.select(t.endpoint_windows)))
            assert row.requests == 7 and row.status_classes is None  # the old window is kept as it was
            indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("endpoint_windows"))
            assert "ix_endpoint_windows_start" in {i["name"] for i in indexes}
        facts = await store.get_endpoint(EID, _now())
        assert facts is not None and facts.requests == 7
        # The old window (no status classes) and new ones live side by side; the job reads the new.
        for b in _population_batches(_series(270), 3, _aligned(BUCKET)):
            assert await store.apply_batch(b)
        for b in _enumeration_batches(3):
            assert await store.apply_batch(b)
        assert (await run_once(store, CONFIG)).raised == 2
    finally:
        await store.close()


Client = TestClient[Any, Any]


async def _post(api: Client, body: bytes) -> Any:
    return await api.post(
        "/api/v1/events", data=body, headers={**bearer(Role.INGEST), "Content-Type": "application/json"}
    )


async def test_bad_sketches_are_refused_with_a_clear_422_and_nothing_changes(api: Client, sqlite_store: Store) -> None:
    start = _aligned(WIDTH)
    cases = [
        (_sketch(start, bytes(100)), "registers must be 1024 bytes (HyperLogLog registers), not 100"),
        (_sketch(start, bytes([60]) * 1024), "holds a register over 55"),
        (ParamSketch(location="path", name="{id}", window_start=start, window_seconds=0, registers=bytes(1024)),
         "window_seconds must be over 0"),
    ]  # fmt: skip
    for bad, reason in cases:
        good = summary(path="/ok", param_sketches=[_sketch(start, bytes(1024))])
        resp = await _post(api, encode_batch(batch([good, summary(param_sketches=[bad])])))
        assert resp.status == 422, await resp.text()
        problem = await resp.json()
        assert reason in problem["detail"] and "summaries[1].param_sketches[0]" in problem["detail"], problem
    too_many = [_sketch(start + timedelta(seconds=i * WIDTH), bytes(1024)) for i in range(33)]
    resp = await _post(api, encode_batch(batch([summary(param_sketches=too_many)])))
    assert resp.status == 422 and "more than 32 sketches" in (await resp.json())["detail"]
    # Nothing of any refused batch was stored.
    assert await sqlite_store.batch_count() == 0
    async with sqlite_store.engine.connect() as conn:
        for table in (t.endpoints, t.endpoint_windows, t.param_sketches):
            assert await conn.scalar(sa.select(sa.func.count()).select_from(table)) == 0
    # A good one is accepted and stored.
    resp = await _post(api, encode_batch(batch([summary(param_sketches=[_sketch(start, _registers(range(10)))])])))
    assert resp.status == 200, await resp.text()
    async with sqlite_store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.param_sketches)) == 1


def test_the_fleet_settings_come_from_flags_or_the_environment(tmp_path: Path) -> None:
    policy = tmp_path / "behaviour.yaml"
    policy.write_text(
        "version: 1\nrate:\n  bucket_seconds: 30\ndistinct:\n  window_seconds: 600\n  distributed_min: 50\n"
    )
    env = {"APIWARD_FLEET_SECONDS": "5", "APIWARD_BEHAVIOUR_POLICY": str(policy)}
    settings = load_settings(insecure_dev=True, environ=env)
    assert (settings.fleet_seconds, settings.behaviour_policy_file) == (5.0, str(policy))
    assert load_settings(insecure_dev=True, environ=env, fleet_seconds=0).fleet_seconds == 0  # off
    config = FleetConfig.load(settings.behaviour_policy_file)
    assert (config.bucket_seconds, config.distinct_seconds, config.params.distinct_min) == (30, 600, 50)
    assert config.params.min_requests == CONFIG.params.min_requests  # omitted keys: the defaults
    policy.write_text("version: 1\nrate:\n  bucket_seconds: fast\n")
    with pytest.raises(ConfigError, match=r"behaviour policy: .*behaviour.yaml:3"):
        load_settings(insecure_dev=True, environ=env)
    with pytest.raises(ConfigError, match="fleet view interval"):
        load_settings(insecure_dev=True, environ={"APIWARD_FLEET_SECONDS": "-1"})
