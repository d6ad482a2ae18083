"""Fleet view of the population-level detections: N sensor replicas behave like one.

A sensor sees only its share of the traffic: behind a load balancer with four replicas, a flood that
quadruples an endpoint's volume looks, to each replica, like the same ratio over a quarter of the
baseline, and a distributed enumeration spread over replicas may stay under every replica's floor.
These pure functions take the per-window rows of *all* sensors, add them up (requests) or merge
them (HyperLogLog registers, register-wise max = the sketch of the union), and run the same
baseline arithmetic as ``sensor/behaviour`` on the merged series:

- ``population_spikes``: per (endpoint, status class), EWMA mean/variance of active windows plus a
  decaying peak; a window fires when it exceeds max(min, factor x baseline, baseline + sigmas x sd).
  The window under test is winsorised at its threshold before it joins the baseline, so a flood
  does not become normal within a window or two.
- ``distributed_enumerations``: per (endpoint, parameter), distinct values across all sensors per
  window against the EWMA / peak of previous windows.

Pure: no IO, no clock. ``collector.fleet_jobs`` calls them periodically on the windows the collector
stores (``endpoint_windows.status_classes`` and ``param_sketches``) and turns the findings into alerts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from sensor.behaviour.sketches import hll_estimates, merge_registers
from sensor.events import EndpointSummary

__all__ = [
    "EndpointKey",
    "EnumerationRow",
    "FleetFinding",
    "FleetParams",
    "WindowRow",
    "distributed_enumerations",
    "population_spikes",
    "rows_from_summaries",
]

EndpointKey = tuple[str, str, str]  # (api, method, path template)
# (endpoint, window_start epoch seconds, requests per status class) from ONE sensor
WindowRow = tuple[EndpointKey, float, Mapping[str, int]]
# (endpoint, parameter "location:name", window_start, HyperLogLog registers) from ONE sensor
EnumerationRow = tuple[EndpointKey, str, float, bytes]


@dataclass(frozen=True, slots=True)
class FleetParams:
    """Defaults mirror ``policies/behaviour.yaml`` (rate / distinct sections)."""

    alpha: float = 0.1
    factor: float = 4.0
    sigmas: float = 6.0
    min_requests: int = 100
    min_windows: int = 3
    peak_half_life_seconds: float = 86_400.0
    distinct_min: int = 500
    distinct_factor: float = 4.0
    distinct_alpha: float = 0.3


@dataclass(frozen=True, slots=True)
class FleetFinding:
    type: str  # API_PopulationSpikeInAPITraffic | API_DistributedParameterEnumeration
    endpoint: EndpointKey
    window_start: float
    scope: str  # status class ("2xx") or parameter ("path:{id}")
    observed: float
    baseline: float
    threshold: float
    sensors: int  # rows merged into the window

    def evidence(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "observed": round(self.observed, 1),
            "baseline": round(self.baseline, 2),
            "threshold": round(self.threshold, 2),
            "window_start": self.window_start,
            "sensors": self.sensors,
            "fleet": True,
        }


def rows_from_summaries(summaries: Iterable[EndpointSummary]) -> list[WindowRow]:
    return [((s.api, s.method, s.path), s.window_start.timestamp(), s.status_classes) for s in summaries]


def _series(
    values: dict[tuple[EndpointKey, str], dict[float, float]],
) -> tuple[list[tuple[EndpointKey, str]], list[float], np.ndarray]:
    """Keys, sorted window starts, and a keys x windows matrix (NaN = key inactive that window)."""
    keys = sorted(values)
    windows = sorted({w for per in values.values() for w in per})
    col = {w: i for i, w in enumerate(windows)}
    matrix = np.full((len(keys), len(windows)), np.nan)
    for r, key in enumerate(keys):
        for w, v in values[key].items():
            matrix[r, col[w]] = v
    return keys, windows, matrix


def population_spikes(rows: Iterable[WindowRow], params: FleetParams = FleetParams()) -> list[FleetFinding]:
    """Windows in which an endpoint's fleet-wide volume (per status class) spiked."""
    totals: dict[tuple[EndpointKey, str], dict[float, float]] = {}
    sensors: dict[tuple[EndpointKey, str, float], int] = {}
    for endpoint, window_start, classes in rows:
        for status_class, requests in classes.items():
            per = totals.setdefault((endpoint, status_class), {})
            per[window_start] = per.get(window_start, 0.0) + requests
            skey = (endpoint, status_class, window_start)
            sensors[skey] = sensors.get(skey, 0) + 1
    if not totals:
        return []
    keys, windows, matrix = _series(totals)
    k = len(keys)
    mean = np.zeros(k)
    var = np.zeros(k)
    peak = np.zeros(k)
    n = np.zeros(k, dtype=np.int64)
    out: list[FleetFinding] = []
    a = params.alpha
    previous: float | None = None
    for c, window in enumerate(windows):
        counts = matrix[:, c]
        active = ~np.isnan(counts)
        counts = np.nan_to_num(counts)
        if previous is not None:
            peak *= 0.5 ** ((window - previous) / params.peak_half_life_seconds)
        previous = window
        base = np.maximum(mean, 0.5 * peak)
        sd = np.sqrt(np.maximum(var, base))
        threshold = np.maximum(np.maximum(params.factor * base, base + params.sigmas * sd), params.min_requests)
        firing = active & (n >= params.min_windows) & (counts > threshold)
        for r in np.flatnonzero(firing):
            endpoint, status_class = keys[r]
            out.append(
                FleetFinding(
                    type="API_PopulationSpikeInAPITraffic",
                    endpoint=endpoint,
                    window_start=window,
                    scope=status_class,
                    observed=float(counts[r]),
                    baseline=float(base[r]),
                    threshold=float(threshold[r]),
                    sensors=sensors[(endpoint, status_class, window)],
                )
            )
        used = np.where(n >= params.min_windows, np.minimum(counts, threshold), counts)
        first = active & (n == 0)
        later = active & (n > 0)
        d = used - mean
        mean = np.where(first, used, np.where(later, mean + a * d, mean))
        var = np.where(first, used, np.where(later, (1 - a) * (var + a * d * d), var))
        peak = np.where(active, np.maximum(peak, used), peak)
        n = n + active
    return out


def distributed_enumerations(rows: Iterable[EnumerationRow], params: FleetParams = FleetParams()) -> list[FleetFinding]:
    """Windows in which one parameter of an endpoint took far more distinct values, across all
    sensors, than in previous windows. Registers of one (endpoint, parameter, window) are merged
    first, then every merged sketch is estimated in one numpy call."""
    grouped: dict[tuple[EndpointKey, str, float], list[bytes]] = {}
    for endpoint, param, window_start, registers in rows:
        grouped.setdefault((endpoint, param, window_start), []).append(registers)
    if not grouped:
        return []
    gkeys = list(grouped)
    merged = [merge_registers(grouped[g]) if len(grouped[g]) > 1 else grouped[g][0] for g in gkeys]
    estimates = hll_estimates(merged)
    series: dict[tuple[EndpointKey, str], dict[float, float]] = {}
    for (endpoint, param, window_start), est in zip(gkeys, estimates, strict=True):
        series.setdefault((endpoint, param), {})[window_start] = est
    keys, windows, matrix = _series(series)
    base = np.zeros(len(keys))
    seen = np.zeros(len(keys), dtype=np.int64)
    out: list[FleetFinding] = []
    for c, window in enumerate(windows):
        values = matrix[:, c]
        active = ~np.isnan(values)
        values = np.nan_to_num(values)
        threshold = np.maximum(float(params.distinct_min), params.distinct_factor * base)
        firing = active & (seen >= 1) & (values > threshold)
        for r in np.flatnonzero(firing):
            endpoint, param = keys[r]
            out.append(
                FleetFinding(
                    type="API_DistributedParameterEnumeration",
                    endpoint=endpoint,
                    window_start=window,
                    scope=param,
                    observed=float(values[r]),
                    baseline=float(base[r]),
                    threshold=float(threshold[r]),
                    sensors=len(grouped[(endpoint, param, window)]),
                )
            )
        used = np.minimum(values, params.distinct_factor * np.maximum(base, 1.0))
        base = np.where(
            active & (seen == 0), values, np.where(active, base + params.distinct_alpha * (used - base), base)
        )
        seen = seen + active
    return out


def window_start_of(value: datetime | float) -> float:
    """Window starts as epoch seconds whatever the caller stores."""
    return value.timestamp() if isinstance(value, datetime) else float(value)


def split_evenly(total: Mapping[str, int], parts: int) -> Sequence[dict[str, int]]:
    """Split a window's counts over ``parts`` sensors (round robin behind a balancer); for tests and
    the simulator."""
    out = [dict.fromkeys(total, 0) for _ in range(parts)]
    for status_class, n in total.items():
        for i in range(parts):
            out[i][status_class] = n // parts + (1 if i < n % parts else 0)
    return out
