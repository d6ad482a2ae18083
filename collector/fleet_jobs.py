"""The fleet view, wired: every ``fleet_seconds`` the collector computes the population spike and the
distributed enumeration from ALL sensors' stored windows (``collector.fleet``), so N sensor replicas
behind a load balancer behave like one, and raises each finding once as an ordinary alert.

What it reads (look-backs in units of the behaviour policy's windows, ``policies/behaviour.yaml`` or
``--behaviour-policy``; the collector should use the sensors' file):

- population: every sensor's summary windows (``endpoint_windows.status_classes``) of the last
  ``POPULATION_WINDOWS`` rate buckets (120 x ``rate.bucket_seconds`` = 2 h by default), for the
  endpoints that had a window in the last ``RECENT_POPULATION_WINDOWS`` buckets. Thresholds are per
  bucket: each sensor's windows are added up into buckets (``--window`` equal to the bucket, 60 s
  both by default, or a divisor of it); wider windows cannot be split and are left out, counted and
  logged (``fleet_windows_too_wide``).
- distributed enumeration: every sensor's parameter sketches (``param_sketches``) of the last
  ``DISTINCT_WINDOWS`` distinct windows (24 x ``distinct.window_seconds`` = 8 h by default; the
  baseline is an EWMA of weight 0.3, which has forgotten anything older: 0.7^24 < 0.02 %), for the
  endpoints with a sketch in the last ``RECENT_DISTINCT_WINDOWS`` windows. A parameter's first window
  inside the look-back is only a warm-up when its series began there (the sensor's sketch started
  mid-window, so that window is partial and would make a too-low baseline).

Only findings whose window is recent (the same ``RECENT_*`` spans) are raised: a first run over old
history does not page anyone about last night. Each finding claims a mark (type, endpoint, scope,
window) in the transaction that raises its alert through ``alert_store.apply_alerts`` (grouping with
the sensors' own alerts of that type and endpoint, suppressions, history, SIEM export): with several
collector replicas on one PostgreSQL, the first insert of the mark wins and the others skip, and a
later run finds the mark and skips too. Marks and sketches older than the longest look-back go with
the posture sweep (``posture_jobs.sweep``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from apiward.logs import get_logger
from apiward.tasks import stop_tasks
from collector.fleet import EnumerationRow, FleetFinding, FleetParams, distributed_enumerations, population_spikes
from collector.store import Store
from collector.store import fleet_store as fs
from collector.store import schema as t
from collector.store.ids import endpoint_id
from sensor.behaviour import ALERT_TYPES
from sensor.behaviour.policy import BehaviourPolicy, bundled_behaviour_path, load_behaviour_policy
from sensor.events import AlertClient, AlertEndpoint, AlertEvent

log = get_logger("collector.fleet")

POPULATION_WINDOWS = 120
RECENT_POPULATION_WINDOWS = 10
DISTINCT_WINDOWS = 24
RECENT_DISTINCT_WINDOWS = 2
_POPULATION_CHUNK = 500  # endpoints per query: ~120 windows x sensors rows each
_DISTINCT_CHUNK = 50  # endpoints per query: sketches are 1 KiB, parameters x 24 windows x sensors each

StoreGetter = Callable[[], Store | None]
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """The fleet thresholds and windows, from the behaviour policy (``from_policy``)."""

    params: FleetParams = field(default_factory=FleetParams)
    bucket_seconds: float = 60.0  # rate.bucket_seconds: the population window
    distinct_seconds: float = 1200.0  # distinct.window_seconds

    @classmethod
    def from_policy(cls, policy: BehaviourPolicy) -> FleetConfig:
        rate, distinct = policy.rate, policy.distinct
        params = FleetParams(
            alpha=rate.alpha,
            factor=rate.factor,
            sigmas=rate.sigmas,
            min_requests=rate.min_population,
            min_windows=rate.min_buckets,
            peak_half_life_seconds=rate.peak_half_life_seconds,
            distinct_min=distinct.distributed_min,
            distinct_factor=distinct.distributed_factor,
        )
        return cls(params=params, bucket_seconds=rate.bucket_seconds, distinct_seconds=distinct.window_seconds)

    @classmethod
    def load(cls, path: str | None = None) -> FleetConfig:
        """From ``path`` (a behaviour.yaml), else the bundled policy; raises ``BehaviourError``."""
        return cls.from_policy(load_behaviour_policy(path or bundled_behaviour_path()))

    @property
    def horizon(self) -> timedelta:
        """How long sketches and marks are kept: the longer look-back."""
        return max(
            timedelta(seconds=POPULATION_WINDOWS * self.bucket_seconds),
            timedelta(seconds=(DISTINCT_WINDOWS + 1) * self.distinct_seconds),
        )


@dataclass(slots=True)
class FleetRun:
    population_findings: int = 0
    enumeration_findings: int = 0
    raised: int = 0  # alerts this run raised (findings already marked are not raised again)
    windows_too_wide: int = 0  # sensor windows wider than rate.bucket_seconds: left out of the population

    def as_dict(self) -> dict[str, int]:
        return {
            "population_findings": self.population_findings,
            "enumeration_findings": self.enumeration_findings,
            "raised": self.raised,
            "windows_too_wide": self.windows_too_wide,
        }


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def fleet_event(finding: FleetFinding, width: float, now: datetime) -> AlertEvent:
    """The alert for a finding: the sensors' alert type, no client (like the sensors' own population
    alerts, so both group into one alert per endpoint), evidence saying it is the fleet's."""
    title, severity = ALERT_TYPES[finding.type]
    api, method, path = finding.endpoint
    start = _dt(finding.window_start)
    evidence: dict[str, object] = {**finding.evidence(), "window_seconds": width}
    if finding.type == "API_PopulationSpikeInAPITraffic":
        evidence["status_class"] = finding.scope
    else:
        location, _, name = finding.scope.partition("#")[0].partition(":")
        evidence.update(scope=f"{location}:{name}", location=location, param=name[:128], variant="all_values")
    return AlertEvent(
        type=finding.type,
        title=title,
        severity=severity,
        endpoint=AlertEndpoint(api=api, method=method, path=path),
        client=AlertClient(),
        first_seen=start,
        last_seen=max(start, min(start + timedelta(seconds=width), now)),
        count=1,
        evidence=evidence,
    )


async def _raise(store: Store, finding: FleetFinding, width: float, now: datetime) -> bool:
    api, method, path = finding.endpoint
    return await fs.raise_once(
        store, fleet_event(finding, width, now), endpoint_id=endpoint_id(api, method, path), scope=finding.scope,
        window_start=_dt(finding.window_start), now=now,
    )  # fmt: skip


def _without_warmup(rows: list[EnumerationRow], since: float, width: float) -> list[EnumerationRow]:
    """Drop each parameter series' first window when the series began inside the look-back (partial)."""
    first: dict[tuple[object, str], float] = {}
    for endpoint, param, start, _ in rows:
        key = (endpoint, param)
        if start < first.get(key, float("inf")):
            first[key] = start
    warmup = {key: start for key, start in first.items() if start >= since + width}
    return [r for r in rows if warmup.get((r[0], r[1])) != r[2]]


async def run_once(store: Store, config: FleetConfig, now: datetime | None = None) -> FleetRun:
    """One pass over the fleet's recent windows; raises each new finding once. Safe to run from
    several collectors at once (marks decide)."""
    now = now or datetime.now(UTC)
    run = FleetRun()
    params = config.params

    # Population: requests per status class, summed over every sensor's window.
    bucket = config.bucket_seconds
    recent = now - timedelta(seconds=RECENT_POPULATION_WINDOWS * bucket)
    since = now - timedelta(seconds=POPULATION_WINDOWS * bucket)
    for chunk in _chunks(await fs.active_endpoints(store, t.endpoint_windows, recent), _POPULATION_CHUNK):
        windows, too_wide = await fs.window_rows(store, chunk, since, bucket)
        run.windows_too_wide += too_wide
        for finding in population_spikes(windows, params):
            if finding.window_start < recent.timestamp():
                continue
            run.population_findings += 1
            run.raised += await _raise(store, finding, bucket, now)

    # Distributed enumeration: distinct values per parameter, sketches merged over every sensor.
    width = config.distinct_seconds
    aligned = now.timestamp() - now.timestamp() % width
    recent_ts = aligned - (RECENT_DISTINCT_WINDOWS - 1) * width
    since_ts = aligned - DISTINCT_WINDOWS * width
    for chunk in _chunks(await fs.active_endpoints(store, t.param_sketches, _dt(recent_ts)), _DISTINCT_CHUNK):
        rows, widths = await fs.sketch_rows(store, chunk, _dt(since_ts))
        for finding in distributed_enumerations(_without_warmup(rows, since_ts, width), params):
            if finding.window_start < recent_ts:
                continue
            run.enumeration_findings += 1
            shipped = widths.get((finding.endpoint, finding.scope, finding.window_start), width)
            run.raised += await _raise(store, finding, shipped, now)
    return run


def fleet_context(get_store: StoreGetter, interval: float, config: FleetConfig) -> CleanupCtx:
    """A ``cleanup_ctx`` entry running ``run_once`` every ``interval`` seconds (0 turns it off)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_loop(get_store, interval, config), name="fleet-view")
        try:
            yield
        finally:
            await stop_tasks([task])

    return ctx


async def _loop(get_store: StoreGetter, interval: float, config: FleetConfig) -> None:
    if interval <= 0:
        return
    warned_wide = False
    while True:
        await asyncio.sleep(interval)
        store = get_store()
        if store is None:
            continue
        try:
            run = await run_once(store, config)
        except Exception:  # the next pass tries again; a failing one must not end the loop
            log.exception("fleet_view_failed")
            continue
        if run.raised:
            log.info("fleet_view", **run.as_dict())
        if run.windows_too_wide and not warned_wide:
            warned_wide = True  # once per process: the sensors' --window is a deployment setting
            log.warning("fleet_windows_too_wide", windows=run.windows_too_wide, bucket_seconds=config.bucket_seconds,
                        detail="sensor summary windows wider than rate.bucket_seconds are left out of the fleet "
                               "population view; set the sensors' --window to the bucket or a divisor of it")


__all__ = ["DISTINCT_WINDOWS", "POPULATION_WINDOWS", "FleetConfig", "FleetRun", "fleet_context", "fleet_event",
           "run_once"]  # fmt: skip
