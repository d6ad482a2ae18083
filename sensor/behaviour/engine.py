"""The behaviour engine: per-endpoint / per-client statistical models and the behavioural alerts.

``observe`` runs once per analysed exchange, on the request path, so it does O(1) plain-Python work
per model (dict lookups, a few float operations, a shift-or into a bitmap) and never calls numpy.
Work that scales with the number of keys happens at boundaries, batched with numpy:

- every ``rate.bucket_seconds`` the population rate rows (endpoint x status class) are updated in
  one vectorised EWMA, and endpoint size/latency baselines take the median/MAD of the bucket's
  sample (robust to the odd huge response);
- every ``drain`` (about once a second) the HyperLogLogs touched since the last drain are estimated
  in one numpy call, and the spray baseline is the p99 of a bounded sample of per-IP counts.

Every table is an LRU with a cap from ``policy.caps``; sketches replace sets wherever a set could
grow with traffic. Values (parameter values, object ids, user names) are only held as 64-bit keyed
hashes inside the process, and alert evidence names them with a keyed BLAKE2b token.

Alerts are grouped per (type, endpoint, client) per ``alert_window_seconds``: a group is emitted at
the first drain after it opens (so an analyst hears about it within seconds) and again when its
window closes with the hits since (the collector adds counts up).
"""

from __future__ import annotations

import math
import os
import random
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import numpy as np

from sensor.behaviour.iplists import IpListSet
from sensor.behaviour.paramtypes import TYPE_BITS, covered, value_type
from sensor.behaviour.policy import BehaviourPolicy, bundled_behaviour_path, load_behaviour_policy
from sensor.behaviour.sketches import (
    Hll,
    KeyedHash,
    QuantileTracker,
    bitmap_add,
    bitmap_count,
    hll_estimates,
    lru_get,
    lru_put,
)
from sensor.behaviour.useragents import UserAgentMatcher
from sensor.events import AlertClient, AlertEndpoint, AlertEvent
from sensor.exchange import Exchange
from sensor.observation import Observation
from sensor.walk import Leaf

__all__ = ["ALERT_TYPES", "BehaviourCounters", "BehaviourEngine", "ParamSketchItem"]

# (endpoint (api, method, template), parameter (location, name), window start, HyperLogLog registers)
ParamSketchItem = tuple[tuple[str, str, str], tuple[str, str], float, bytes]

# type -> (title, severity). Ids are stable contracts (DESIGN section 6 and the "beyond" list).
ALERT_TYPES: Final[dict[str, tuple[str, str]]] = {
    "API_PopulationSpikeInAPITraffic": ("Traffic to an endpoint far above its baseline", "medium"),
    "API_SpikeInAPITraffic": ("Traffic from one IP to an endpoint far above its baseline", "medium"),
    "API_SpikeInPayload": ("Unusually large payload for this client and endpoint", "medium"),
    "API_SpikeInLatency": ("Unusually high latency for this client and endpoint", "medium"),
    "API_SprayInRequests": ("One IP called an unusually large number of endpoints", "medium"),
    "API_ParameterEnumeration": ("One IP used unusually many values of one parameter", "medium"),
    "API_DistributedParameterEnumeration": ("Unusually many values of one parameter across all IPs", "medium"),
    "API_UnseenParamType": ("A parameter value of a type this parameter has not had", "medium"),
    "API_UnseenParam": ("A parameter never seen on this endpoint", "medium"),
    "API_AccessFromTorExitNode": ("Access from a Tor exit node", "medium"),
    "API_AccessFromSuspiciousIP": ("Access from an IP on a threat-intelligence list", "high"),
    "API_AccessFromSuspiciousUserAgent": ("User agent naming an attack tool or carrying attack content", "medium"),
    "API_BOLA": ("A principal accessed objects returned to other principals", "high"),
    "API_BruteForce": ("Burst of authentication failures", "medium"),
    "API_CredentialStuffing": ("Authentication failures across many user names", "high"),
    "API_BrokenAuthentication": ("Request with a broken or missing credential was accepted", "high"),
    "API_ExcessiveDataExposure": (
        "Response carried sensitive data, or far more records, than this endpoint normally returns",
        "medium",
    ),
}

_NO_LIMIT: Final = math.inf
_SHARED: Final = ""  # owner-map value for an object id returned to more than one principal
_CLIENT_SAMPLE: Final = 128  # per-endpoint clients whose bucket counts feed the per-client prior
_SIZE_SAMPLE: Final = 64  # per (endpoint, status class) values per bucket for median/MAD
_SPRAY_SAMPLE: Final = 4096  # per-IP distinct-endpoint counts kept for the spray baseline
_MAX_VALUE_LEAVES: Final = 24  # parameter values inspected per request
_MAX_ID_LEAVES: Final = 64  # response ids registered per response
# An endpoint gets its distinct-value sketches (2 KiB per parameter) from its 50th request on: most
# of a large API's templates are called rarely, and a one-off template must not cost a sketch.
_HLL_MIN_REQUESTS: Final = 50
_LOG_FLOOR: Final = 1.0  # sizes/latencies are modelled as log(1 + x)


@dataclass(slots=True)
class BehaviourCounters:
    observed: int = 0
    errors: int = 0  # observe() calls that raised (counted, never propagated)
    hits: int = 0  # alerting observations (before grouping)
    alerts_emitted: int = 0  # AlertEvents returned by drain
    groups_dropped: int = 0  # hits lost because ``caps.groups`` open groups existed
    evicted: dict[str, int] = field(default_factory=dict)  # table -> LRU evictions
    hll_refused: int = 0  # (endpoint, parameter) sketches not created: caps.hll_sketches reached
    sketches_dropped: int = 0  # fleet-view sketches not shipped: too many waiting (caps.hll_sketches)
    rows_refused: int = 0  # population rows not created: table full
    iplist_reloads: int = 0


class _Param:
    """What one endpoint knows about one parameter."""

    __slots__ = (
        "enum_q", "hll", "hll_base", "hll_ips", "hll_peak", "hll_start", "hll_windows", "invisible", "key",
        "mask", "miss", "miss_base", "miss_peak", "pending", "touched",
    )  # fmt: skip

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.mask = 0  # TYPE_BITS seen
        self.invisible = 0  # requests carrying the param with no visible value (JSON null/bool/short int)
        self.pending: dict[str, set[str]] | None = None  # unseen type -> client IPs that used it (promotion)
        self.enum_q: QuantileTracker | None = None  # p99 over (IP, endpoint) windows of distinct values
        # Distinct values across all clients this window, and distinct values answered 4xx ("misses"):
        # an enumeration from many IPs mostly guesses wrong, while legitimate users rarely do, so the
        # miss sketch has a near-zero baseline and fires long before the all-values one would.
        self.hll: Hll | None = None
        self.miss: Hll | None = None
        self.miss_base = 0.0
        self.miss_peak = 0.0
        self.hll_ips = 0  # bitmap of the IPs that contributed this window
        self.hll_start = 0.0
        self.hll_base = 0.0  # EWMA of previous windows' distinct counts
        self.hll_peak = 0.0
        self.hll_windows = 0
        self.touched = False


class _Endpoint:
    __slots__ = (
        "alert_ep", "auth_ok", "client_counts", "client_p95", "client_prior_n", "eid", "fail_base", "fail_ips",
        "fail_start", "fail_users", "fail_windows", "fails", "first_seen", "id_foreign", "id_known", "id_refs",
        "key", "known", "learned", "noauth_ok", "ok_responses", "params", "path_vars", "pending_params",
        "pending_types", "rec_base", "rec_sample", "requests", "resp_types", "rows", "size_base", "size_sample",
    )  # fmt: skip

    def __init__(self, key: tuple[str, str, str], eid: int, ts: float) -> None:
        self.key = key
        self.alert_ep = AlertEndpoint(api=key[0], method=key[1], path=key[2])
        self.eid = eid
        self.first_seen = ts
        self.requests = 0
        self.learned = False
        self.rows = [-1, -1, -1, -1, -1, -1]  # population row per status class index (0 = none .. 5xx)
        self.client_counts: dict[str, int] = {}  # this bucket, first _CLIENT_SAMPLE clients
        self.client_p95 = 0.0  # EWMA over buckets of the p95 per-client request count
        self.client_prior_n = 0
        # status index -> [log req, log resp, log latency] samples of this bucket
        self.size_sample: dict[int, list[tuple[float, float, float]]] = {}
        # status index -> (center req, scale req, center resp, scale resp, center lat, scale lat, buckets)
        self.size_base: dict[int, list[float]] = {}
        self.known: set[tuple[str, str]] = set()
        self.pending_params: dict[tuple[str, str], set[str]] = {}
        self.params: dict[tuple[str, str], _Param] = {}
        segs = [s for s in key[2].split("/") if s]
        self.path_vars = {i: s for i, s in enumerate(segs) if s.startswith("{")}
        self.auth_ok = 0
        self.noauth_ok = 0
        self.ok_responses = 0
        self.resp_types: dict[str, int] = {}
        # records per 2xx response (largest JSON array): log values of this bucket, and the robust
        # baseline [center, scale, buckets] rolled from them like the size baselines
        self.rec_sample: list[float] | None = None
        self.rec_base: list[float] | None = None
        self.pending_types: dict[str, set[str]] = {}
        self.id_refs = 0
        self.id_foreign = 0
        self.id_known = 0
        self.fail_start = 0.0
        self.fails = 0
        self.fail_users = 0
        self.fail_ips = 0
        self.fail_base = 0.0
        self.fail_windows = 0


class _Pair:
    """(endpoint, client IP) state."""

    __slots__ = (
        "bucket", "count", "enum", "enum_prev", "enum_start", "mean", "n", "size", "size_more", "size_si", "thresh",
        "var",
    )  # fmt: skip

    def __init__(self) -> None:
        self.bucket = -1.0
        self.count = 0
        self.mean = 0.0
        self.var = 0.0
        self.n = 0
        self.thresh = _NO_LIMIT
        # [n, c_req, d_req, c_resp, d_resp, c_lat, d_lat, n_rec, c_rec, d_rec] (records: ``_records``,
        # 2xx JSON responses only) as C doubles (a third of a list's size) for the
        # first status class the client got; other classes in a dict made only when needed. A pair
        # costs ~1 KB of Python objects, so each avoided container counts at 100,000 pairs.
        self.size_si = -1
        self.size: array[float] | None = None
        self.size_more: dict[int, array[float]] | None = None
        self.enum: dict[tuple[str, str], int] | None = None  # parameter -> bitmap of value hashes this window
        self.enum_start = 0.0
        # parameter -> distinct values in the previous window: a steady heavy client (an office
        # behind one NAT address) is its own baseline.
        self.enum_prev: dict[tuple[str, str], float] | None = None


class _Client:
    """Per client IP: spray sketch and the authentication failure window."""

    __slots__ = ("auth_fails", "auth_start", "auth_users", "spray_bits", "spray_start")

    def __init__(self, ts: float) -> None:
        self.spray_start = ts
        self.spray_bits = 0
        self.auth_start = ts
        self.auth_fails = 0
        self.auth_users = 0


class _Tally:
    """A windowed counter with two bitmaps (BOLA: foreign ids, walked ids; users: -, IPs)."""

    __slots__ = ("a", "b", "count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.a = 0
        self.b = 0


class _Group:
    __slots__ = ("client", "count", "emitted", "endpoint", "evidence", "first", "last", "type", "window_end")

    def __init__(self, type_: str, endpoint: AlertEndpoint, client: AlertClient, ts: float, window_end: float) -> None:
        self.type = type_
        self.endpoint = endpoint
        self.client = client
        self.first = ts
        self.last = ts
        self.count = 0
        self.emitted = 0
        self.window_end = window_end
        self.evidence: dict[str, object] = {}


_GLOBAL_EP: Final = AlertEndpoint(api="*", method="*", path="*")


def _status_index(status: int) -> int:
    return status // 100 if 0 <= status < 600 else 0


def _sc_name(index: int) -> str:
    return "none" if index == 0 else f"{index}xx"


def _median_mad(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD-based sd (1.4826 x MAD) per column: the robust baselines' estimator."""
    med = np.median(arr, axis=0)
    return med, np.median(np.abs(arr - med), axis=0) * 1.4826


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class BehaviourEngine:
    """See the module docstring. Build with ``from_policies``; feed ``observe``; ``drain`` alerts."""

    def __init__(
        self,
        policy: BehaviourPolicy,
        *,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
        seed: int = 0xBE4A,
    ) -> None:
        self.policy = p = policy
        self.clock = clock
        self.hasher = KeyedHash(secret)
        self.counters = BehaviourCounters()
        self._rng = random.Random(seed)
        self._disabled = frozenset(p.disabled)
        caps = p.caps
        self._endpoints: OrderedDict[tuple[str, str, str], _Endpoint] = OrderedDict()
        self._pairs: OrderedDict[tuple[int, str], _Pair] = OrderedDict()
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._owners: OrderedDict[int, str] = OrderedDict()  # object id hash -> hashed principal (or _SHARED)
        self._bola: OrderedDict[tuple[str, int], _Tally] = OrderedDict()  # (principal, eid): foreign / walked ids
        self._users: OrderedDict[int, _Tally] = OrderedDict()  # username hash: failures, IPs
        self._ip_verdicts: OrderedDict[str, tuple[int, tuple[tuple[str, str], ...]]] = OrderedDict()
        self._ua_verdicts: OrderedDict[str, tuple[str, str] | None] = OrderedDict()
        self._groups: dict[tuple[str, tuple[str, str, str], str, str, float], _Group] = {}
        self._hll_count = 0
        self._touched_params: list[tuple[_Endpoint, _Param]] = []
        # Sketches to ship to the collector (``take_param_sketches``): (endpoint, parameter) whose live
        # window changed since the last take (marked at drain), and final registers of closed windows.
        self._ship_live: dict[tuple[tuple[str, str, str], tuple[str, str]], tuple[_Endpoint, _Param]] = {}
        self._ship_closed: dict[tuple[tuple[str, str, str], tuple[str, str], float], bytes] = {}
        # Population rows: numpy state, Python list for the hot-path counters.
        self._row_cap = caps.endpoints * 3
        self._row_free = list(range(self._row_cap - 1, -1, -1))
        self._row_owner: list[tuple[_Endpoint, int] | None] = [None] * self._row_cap
        self._pop_count = [0] * self._row_cap
        self._pop_thresh = [_NO_LIMIT] * self._row_cap
        self._pop_mean = np.zeros(self._row_cap)
        self._pop_var = np.zeros(self._row_cap)
        self._pop_peak = np.zeros(self._row_cap)
        self._pop_n = np.zeros(self._row_cap, dtype=np.int64)
        self._row_hi = 0  # rows at and above were never handed out
        self._bucket_start = -1.0
        self._bucket_end = -1.0
        self._bucket_endpoints: dict[int, _Endpoint] = {}  # endpoints touched this bucket
        # Spray baseline.
        self._spray_sample: list[float] = []
        self._spray_seen = 0
        self._spray_thresh = float(p.distinct.spray_min)
        # Global learning (spray and IP-independent checks that are not per endpoint).
        self._first_ts: float | None = None
        self._total = 0
        self._silent = False  # warm start: learn, do not alert
        self._global_done = False  # a warm start completed the global learning
        self.iplists = IpListSet(p.iplists, p.base_dir)
        self._next_reload = 0.0
        self.ua = UserAgentMatcher(p.useragents.tools, p.useragents.patterns)
        self._user_keys = frozenset(k.lower() for k in p.auth.username_keys)
        self._id_keys = frozenset(p.bola.id_keys)
        self._id_suffixes = tuple(p.bola.id_suffixes)
        self._fail_statuses = frozenset(p.auth.failure_statuses)

    @classmethod
    def from_policies(
        cls, policy_dir: str | None, *, clock: Callable[[], float] = time.time, secret: bytes | None = None
    ) -> BehaviourEngine:
        """``policy_dir/behaviour.yaml`` when present, else the bundled policy. Raises
        ``BehaviourError`` (``file:line: problem``) for a bad file."""
        path = bundled_behaviour_path()
        if policy_dir:
            candidate = os.path.join(policy_dir, "behaviour.yaml")
            if os.path.isfile(candidate):
                path = candidate
        return cls(load_behaviour_policy(path), clock=clock, secret=secret)

    # ------------------------------------------------------------------------------------------
    # hot path

    def observe(self, obs: Observation, ex: Exchange, leaves: Sequence[Leaf]) -> None:
        """Update every model with one exchange and record the alerts it raises. Never raises."""
        self.counters.observed += 1
        try:
            self._observe(obs, ex, leaves)
        except Exception:  # one odd exchange must not break the sensor; counted for metrics
            self.counters.errors += 1

    def _observe(self, obs: Observation, ex: Exchange, leaves: Sequence[Leaf]) -> None:
        p = self.policy
        ts = obs.timestamp
        if self._first_ts is None:
            self._first_ts = ts
        self._total += 1
        if ts >= self._bucket_end:
            self._roll(ts)
        ip = obs.client.ip
        route = obs.route
        key = (route.api, obs.method, route.template)
        ep = lru_get(self._endpoints, key)
        if ep is None:
            ep = _Endpoint(key, self.hasher.fast("\x00".join(key)), ts)
            old = lru_put(self._endpoints, key, ep, p.caps.endpoints)
            if old is not None:
                self._evict_endpoint(old)
        ep.requests += 1
        learned = ep.learned
        if not learned and ep.requests >= p.learning.requests and ts - ep.first_seen >= p.learning.seconds:
            ep.learned = learned = True
        if self._silent:
            learned = False
        status = obs.status
        si = _status_index(status)
        self._bucket_endpoints[ep.eid] = ep

        # -- lists and user agents: no learning needed ----------------------------------------
        if self.iplists.feeds:
            verdict = self._ip_verdicts.get(ip)
            if verdict is None or verdict[0] != self.iplists.generation:
                verdict = (self.iplists.generation, self.iplists.match(ip))
                lru_put(self._ip_verdicts, ip, verdict, p.caps.ip_cache)
            for alert_type, list_name in verdict[1]:
                self._hit(alert_type, ep, obs, ts, {"list": list_name, "list_size": self.iplists.sizes[list_name]})
        ua = ex.request_headers.get("User-Agent")
        if ua:
            if ua in self._ua_verdicts:
                ua_verdict = self._ua_verdicts[ua]
            else:
                ua_verdict = self.ua.match(ua)
                lru_put(self._ua_verdicts, ua, ua_verdict, p.caps.ua_cache)
            if ua_verdict is not None:
                self._hit(
                    "API_AccessFromSuspiciousUserAgent", ep, obs, ts,
                    {"matched": ua_verdict[0], "name": ua_verdict[1], "user_agent_hash": self.hasher.stable("ua", ua)},
                )  # fmt: skip

        # -- population rate (endpoint x status class) ----------------------------------------
        row = ep.rows[si]
        if row < 0:
            row = self._alloc_row(ep, si)
        if row >= 0:
            c = self._pop_count[row] + 1
            self._pop_count[row] = c
            if learned and c > self._pop_thresh[row]:
                self._hit(
                    "API_PopulationSpikeInAPITraffic", ep, obs, ts,
                    {
                        "status_class": _sc_name(si), "baseline": round(float(self._pop_mean[row]), 2),
                        "observed": c, "threshold": round(self._pop_thresh[row], 2),
                        "window_seconds": p.rate.bucket_seconds,
                    },
                    client=False,
                )  # fmt: skip
        cc = ep.client_counts
        n_ip = cc.get(ip)
        if n_ip is not None:
            cc[ip] = n_ip + 1
        elif len(cc) < _CLIENT_SAMPLE:
            cc[ip] = 1

        # -- per (endpoint, IP) rate ----------------------------------------------------------
        pkey = (ep.eid, ip)
        pair = lru_get(self._pairs, pkey)
        if pair is None:
            pair = _Pair()
            pair.enum_start = ts
            if lru_put(self._pairs, pkey, pair, p.caps.pairs) is not None:
                self._evicted("pairs")
        if pair.bucket != self._bucket_start:
            self._roll_pair(pair, ep)
        pair.count += 1
        if learned and pair.count > pair.thresh:
            self._hit(
                "API_SpikeInAPITraffic", ep, obs, ts,
                {
                    "baseline": round(max(pair.mean, ep.client_p95), 2), "observed": pair.count,
                    "threshold": round(pair.thresh, 2), "window_seconds": p.rate.bucket_seconds,
                    "client_history_buckets": pair.n,
                },
            )  # fmt: skip

        # -- sizes and latency ----------------------------------------------------------------
        self._sizes(ep, pair, si, obs, ts=ts, learned=learned)

        # -- spray: distinct endpoints per IP -------------------------------------------------
        client = lru_get(self._clients, ip)
        if client is None:
            client = _Client(ts)
            if lru_put(self._clients, ip, client, p.caps.clients) is not None:
                self._evicted("clients")
        window = p.distinct.window_seconds
        if ts - client.spray_start >= window:
            self._spray_done(client.spray_bits)
            client.spray_start = ts
            client.spray_bits = 0
        bits = bitmap_add(client.spray_bits, ep.eid)
        if bits != client.spray_bits:
            client.spray_bits = bits
            if self._global_learned(ts):
                distinct = bitmap_count(bits)
                if distinct > self._spray_thresh:
                    self._hit(
                        "API_SprayInRequests", ep, obs, ts,
                        {
                            "observed": round(distinct), "threshold": round(self._spray_thresh, 1),
                            "baseline": self._spray_baseline(), "window_seconds": window,
                        },
                    )  # fmt: skip

        # -- parameters: known set, types, enumeration, BOLA ids ------------------------------
        if obs.params:
            self._params(ep, obs, ts=ts, learned=learned)
        if leaves:
            self._values(ep, pair, obs, leaves, ts=ts, learned=learned)

        # -- authentication -------------------------------------------------------------------
        if status in self._fail_statuses:
            self._auth_failure(ep, client, obs, leaves, ts=ts, learned=learned)
        if 200 <= status < 300:
            self._accepted(ep, obs, ts=ts, learned=learned)
            if obs.records >= 0:
                self._records(ep, pair, si, obs, ts=ts, learned=learned)

    # ------------------------------------------------------------------------------------------
    # models

    def _global_learned(self, ts: float) -> bool:
        if self._silent or self._first_ts is None:
            return False
        if self._global_done:
            return True
        lp = self.policy.learning
        return self._total >= lp.requests and ts - self._first_ts >= lp.seconds

    def _alloc_row(self, ep: _Endpoint, si: int) -> int:
        if not self._row_free:
            self.counters.rows_refused += 1
            return -1
        row = self._row_free.pop()
        if row >= self._row_hi:
            self._row_hi = row + 1
        ep.rows[si] = row
        self._row_owner[row] = (ep, si)
        self._pop_count[row] = 0
        self._pop_thresh[row] = _NO_LIMIT
        self._pop_mean[row] = self._pop_var[row] = self._pop_peak[row] = 0.0
        self._pop_n[row] = 0
        return row

    def _evict_endpoint(self, ep: _Endpoint) -> None:
        self._evicted("endpoints")
        for row in ep.rows:
            if row >= 0:
                self._row_owner[row] = None
                self._row_free.append(row)
        for param in ep.params.values():
            if param.hll is not None:
                self._hll_count -= 2
        self._bucket_endpoints.pop(ep.eid, None)

    def _evicted(self, table: str) -> None:
        ev = self.counters.evicted
        ev[table] = ev.get(table, 0) + 1

    def _roll(self, ts: float) -> None:
        """Close the rate bucket: vectorised EWMA of every population row, endpoint size baselines
        (median/MAD), per-client priors. Buckets are aligned on the epoch clock like summaries."""
        rp = self.policy.rate
        width = rp.bucket_seconds
        start = ts - ts % width
        if self._bucket_start >= 0:
            elapsed = start - self._bucket_start
            # Rows are handed out lowest first and rows never handed out keep their initial state
            # (no count, no history, no limit) through any roll: only rows below the high-water mark
            # are computed. A roll costs ~20 µs for a few endpoints instead of ~0.8 ms for the
            # full capacity, which replay pays every minute of capture time.
            hi = self._row_hi
            counts = np.asarray(self._pop_count[:hi], dtype=np.float64)
            active = counts > 0
            thresh = np.asarray(self._pop_thresh[:hi], dtype=np.float64)
            # Winsorise at the threshold: an attack bucket must not become the new normal at once.
            used = np.where(np.isfinite(thresh), np.minimum(counts, thresh), counts)
            mean, var, peak, n = self._pop_mean[:hi], self._pop_var[:hi], self._pop_peak[:hi], self._pop_n[:hi]
            first = active & (n == 0)
            later = active & (n > 0)
            a = rp.alpha
            d = used - mean
            mean[:] = np.where(first, used, np.where(later, mean + a * d, mean))
            var[:] = np.where(first, used, np.where(later, (1 - a) * (var + a * d * d), var))
            decay = 0.5 ** (elapsed / rp.peak_half_life_seconds)
            peak[:] = np.maximum(peak * decay, used)
            n += active
            # Only active buckets move the mean: an endpoint idle overnight keeps its daytime
            # baseline, and the decaying peak keeps yesterday's busiest minute normal.
            base = np.maximum(mean, 0.5 * peak)
            sd = np.sqrt(np.maximum(var, base))
            th = np.maximum(np.maximum(rp.factor * base, base + rp.sigmas * sd), rp.min_population)
            th = np.where(n >= rp.min_buckets, th, _NO_LIMIT)
            self._pop_thresh[:hi] = th.tolist()
            self._pop_count[:hi] = [0] * hi
            self._roll_endpoints()
        self._bucket_start = start
        self._bucket_end = start + width
        self._bucket_endpoints = {}

    def _roll_endpoints(self) -> None:
        a = self.policy.rate.alpha
        sa = self.policy.sizes.alpha
        for ep in self._bucket_endpoints.values():
            counts = ep.client_counts
            if counts:
                values = sorted(counts.values())
                p95 = float(values[min(len(values) - 1, int(0.95 * len(values)))])
                ep.client_p95 = p95 if ep.client_prior_n == 0 else ep.client_p95 + a * (p95 - ep.client_p95)
                ep.client_prior_n += 1
                ep.client_counts = {}
            for si, sample in ep.size_sample.items():
                if len(sample) < 3:
                    continue
                med, mad = _median_mad(np.asarray(sample))  # (n, 3) log values
                base = ep.size_base.get(si)
                if base is None:
                    ep.size_base[si] = [float(x) for x in (med[0], mad[0], med[1], mad[1], med[2], mad[2])] + [1.0]
                else:
                    for m in range(3):
                        base[2 * m] += sa * 4 * (float(med[m]) - base[2 * m])
                        base[2 * m + 1] += sa * 4 * (float(mad[m]) - base[2 * m + 1])
                    base[6] += 1
            ep.size_sample = {}
            rs = ep.rec_sample
            if rs is not None:
                if len(rs) >= 3:
                    rmed, rmad = _median_mad(np.asarray(rs))
                    rb = ep.rec_base
                    if rb is None:
                        ep.rec_base = [float(rmed), float(rmad), 1.0]
                    else:
                        rb[0] += sa * 4 * (float(rmed) - rb[0])
                        rb[1] += sa * 4 * (float(rmad) - rb[1])
                        rb[2] += 1
                ep.rec_sample = None

    def _roll_pair(self, pair: _Pair, ep: _Endpoint) -> None:
        rp = self.policy.rate
        if pair.count > 0:
            used = min(float(pair.count), pair.thresh)
            if pair.n == 0:
                pair.mean = used
                pair.var = used
            else:
                d = used - pair.mean
                pair.mean += rp.alpha * d
                pair.var = (1 - rp.alpha) * (pair.var + rp.alpha * d * d)
            pair.n += 1
        pair.count = 0
        pair.bucket = self._bucket_start
        prior = ep.client_p95 if ep.client_prior_n >= rp.min_buckets else 0.0
        own = pair.mean if pair.n >= rp.min_buckets else 0.0
        base = max(own, prior)
        sd = math.sqrt(max(pair.var if pair.n >= rp.min_buckets else 0.0, base))
        pair.thresh = max(float(rp.min_client), rp.factor * base, base + rp.sigmas * sd)

    def _sizes(self, ep: _Endpoint, pair: _Pair, si: int, obs: Observation, *, ts: float, learned: bool) -> None:
        sp = self.policy.sizes
        values = (math.log(_LOG_FLOOR + obs.request_size), math.log(_LOG_FLOOR + obs.response_size),
                  math.log(_LOG_FLOOR + max(obs.latency_ms, 0.0)))  # fmt: skip
        sample = ep.size_sample.get(si)
        if sample is None:
            sample = ep.size_sample[si] = []
        if len(sample) < _SIZE_SAMPLE:
            sample.append(values)
        else:
            j = self._rng.randrange(ep.requests)
            if j < _SIZE_SAMPLE:
                sample[j] = values
        if pair.size_si == si:  # noqa: SIM108 (the common case first, readably)
            own = pair.size
        else:
            own = pair.size_more.get(si) if pair.size_more is not None else None
        if own is None:
            own = array("d", (0.0, values[0], 0.0, values[1], 0.0, values[2], 0.0, 0.0, 0.0, 0.0))
            if pair.size is None:
                pair.size, pair.size_si = own, si
            else:
                if pair.size_more is None:
                    pair.size_more = {}
                pair.size_more[si] = own
        base = ep.size_base.get(si)
        spiked = False
        if learned and base is not None:
            use_own = own[0] >= sp.pair_min_samples
            for m, (ratio, floor, alert) in enumerate(
                (
                    (sp.payload_ratio, math.log(_LOG_FLOOR + sp.min_request_bytes), "request"),
                    (sp.payload_ratio, math.log(_LOG_FLOOR + sp.min_response_bytes), "response"),
                    (sp.latency_ratio, math.log(_LOG_FLOOR + sp.min_latency_ms), "latency"),
                )
            ):
                v = values[m]
                if v < floor:
                    continue
                if use_own:
                    center, scale = own[1 + 2 * m], own[2 + 2 * m] * 1.2533  # mean abs dev -> sd
                else:
                    center, scale = base[2 * m], base[2 * m + 1]
                limit = center + max(sp.sigmas * scale, math.log(ratio))
                if v > limit:
                    spiked = True
                    self._hit(
                        "API_SpikeInLatency" if alert == "latency" else "API_SpikeInPayload", ep, obs, ts,
                        {
                            "variant": alert, "status_class": _sc_name(si),
                            "baseline": round(math.exp(center) - _LOG_FLOOR, 1),
                            "observed": round(math.exp(v) - _LOG_FLOOR, 1),
                            "threshold": round(math.exp(limit) - _LOG_FLOOR, 1),
                            "unit": "ms" if alert == "latency" else "bytes",
                            "baseline_scope": "client" if use_own else "endpoint",
                        },
                    )  # fmt: skip
        if not spiked:  # a spike does not teach the client's baseline that spikes are normal
            a = sp.alpha if own[0] >= 5 else 1.0 / (own[0] + 1.0)
            for m in range(3):
                d = values[m] - own[1 + 2 * m]
                own[1 + 2 * m] += a * d
                own[2 + 2 * m] += a * (abs(d) - own[2 + 2 * m])
            own[0] += 1

    def _records(self, ep: _Endpoint, pair: _Pair, si: int, obs: Observation, *, ts: float, learned: bool) -> None:
        """API_ExcessiveDataExposure, record_count: the records of a 2xx response (elements of its
        largest JSON array) against the endpoint's robust log-scale baseline (rolled per bucket by
        ``_roll_endpoints`` with the size baselines' estimator) and, once the client has history, its
        own EWMA in the pair's size array (a power user's long list is normal for that user)."""
        n = obs.records
        v = math.log(_LOG_FLOOR + n)
        own = pair.size if pair.size_si == si else (pair.size_more.get(si) if pair.size_more is not None else None)
        base = ep.rec_base
        if learned and base is not None:
            xp = self.policy.exposure
            sp = self.policy.sizes
            if n >= xp.min_records:
                margin = math.log(xp.records_factor)
                center = base[0]
                limit = center + max(sp.sigmas * base[1], margin)
                scope = "endpoint"
                if own is not None and own[7] >= sp.pair_min_samples:
                    own_limit = own[8] + max(sp.sigmas * own[9] * 1.2533, margin)  # mean abs dev -> sd
                    if own_limit > limit:
                        center, limit, scope = own[8], own_limit, "client"
                if v > limit:
                    self._hit("API_ExcessiveDataExposure", ep, obs, ts,
                              {"variant": "record_count", "path": obs.records_path[:256], "observed": n,
                               "observed_is_lower_bound": obs.records_partial,
                               "baseline": round(math.exp(center) - _LOG_FLOOR, 1),
                               "baseline_meaning": "typical records per 2xx response (largest JSON array)",
                               "baseline_scope": scope,
                               "threshold": round(max(math.exp(limit) - _LOG_FLOOR, float(xp.min_records)), 1),
                               "unit": "records", "status": obs.status})  # fmt: skip
                    return  # a dump teaches neither baseline that dumps are normal
        if own is not None:
            k = own[7]
            if k == 0:
                own[8] = v
            else:
                a = self.policy.sizes.alpha if k >= 5 else 1.0 / (k + 1.0)
                d = v - own[8]
                own[8] += a * d
                own[9] += a * (abs(d) - own[9])
            own[7] = k + 1
        sample = ep.rec_sample
        if sample is None:
            ep.rec_sample = [v]
        elif len(sample) < _SIZE_SAMPLE:
            sample.append(v)
        else:
            j = self._rng.randrange(ep.requests)
            if j < _SIZE_SAMPLE:
                sample[j] = v

    def _spray_done(self, bits: int) -> None:
        if not bits:
            return
        count = bitmap_count(bits)
        self._spray_seen += 1
        sample = self._spray_sample
        if len(sample) < _SPRAY_SAMPLE:
            sample.append(count)
        else:
            j = self._rng.randrange(self._spray_seen)
            if j < _SPRAY_SAMPLE:
                sample[j] = count

    def _spray_baseline(self) -> float:
        if not self._spray_sample:
            return 0.0
        return round(float(np.percentile(np.asarray(self._spray_sample), 99.0)), 1)

    def _params(self, ep: _Endpoint, obs: Observation, *, ts: float, learned: bool) -> None:
        pp = self.policy
        for pkey in obs.params:
            if pkey in ep.known:
                continue
            if not learned:
                if len(ep.known) < pp.caps.params_per_endpoint:
                    ep.known.add(pkey)
                continue
            ips = ep.pending_params.get(pkey)
            if ips is None:
                if len(ep.pending_params) >= pp.caps.params_per_endpoint:
                    continue
                ips = ep.pending_params[pkey] = set()
            ips.add(obs.client.ip)
            if len(ips) >= pp.params.promote_clients:
                # Enough distinct clients send it: a rollout, not a probe. Learn it and stop.
                del ep.pending_params[pkey]
                if len(ep.known) < pp.caps.params_per_endpoint:
                    ep.known.add(pkey)
                continue
            self._hit(
                "API_UnseenParam", ep, obs, ts,
                {"location": pkey[0], "param": pkey[1][:128], "known_params": len(ep.known),
                 "observed": 1, "baseline": 0, "threshold": 0},
            )  # fmt: skip

    def _param_state(self, ep: _Endpoint, pkey: tuple[str, str]) -> _Param | None:
        st = ep.params.get(pkey)
        if st is None:
            if len(ep.params) >= self.policy.caps.params_per_endpoint:
                return None
            st = ep.params[pkey] = _Param(pkey)
        return st

    def _is_id_name(self, name: str) -> bool:
        return name in self._id_keys or name.endswith(self._id_suffixes)

    def _values(
        self, ep: _Endpoint, pair: _Pair, obs: Observation, leaves: Sequence[Leaf], *, ts: float, learned: bool
    ) -> None:
        """Parameter values (path variables, query, top-level body fields) and response ids."""
        pp = self.policy
        dp = pp.distinct
        hasher = self.hasher
        window = dp.window_seconds
        if ts - pair.enum_start >= window:
            prev: dict[tuple[str, str], float] | None = None
            if pair.enum:
                prev = {}
                for pkey, bits in pair.enum.items():
                    prev[pkey] = count = bitmap_count(bits)
                    st = ep.params.get(pkey)
                    if st is not None:
                        if st.enum_q is None:
                            st.enum_q = QuantileTracker(0.99)
                        st.enum_q.add(count)
            pair.enum_prev = prev if ts - pair.enum_start < 2 * window else None
            pair.enum = None
            pair.enum_start = ts
        principal = obs.auth.principal
        ok = 200 <= obs.status < 300
        miss = 400 <= obs.status < 500
        path_vars = ep.path_vars
        request_ids: list[int] = []
        seen_body: set[str] | None = None
        inspected = 0
        response_ids = 0
        for leaf in leaves:
            loc = leaf.location
            if loc == "path":
                index = int(leaf.path[5:-1])
                var = path_vars.get(index)
                if var is None:
                    continue
                pkey = ("path", var)
                is_id = True
            elif loc == "query":
                pkey = ("query", leaf.key)
                is_id = self._is_id_name(leaf.key)
            elif loc == "request_body":
                if leaf.path != "$." + leaf.key:
                    continue  # nested: types of nested fields are a schema matter, not a parameter
                pkey = ("body", leaf.key)
                is_id = self._is_id_name(leaf.key)
                if seen_body is None:
                    seen_body = set()
                seen_body.add(leaf.key)
            elif loc == "response_body":
                if ok and principal is not None and response_ids < _MAX_ID_LEAVES and self._is_id_name(leaf.key):
                    response_ids += 1
                    h = hasher.fast(ep.key[0] + "\x00" + leaf.value)
                    if h not in request_ids:  # an echo of a requested id proves nothing about ownership
                        self._own(h, principal)
                continue
            else:
                continue
            inspected += 1
            if inspected > _MAX_VALUE_LEAVES:
                continue
            st = self._param_state(ep, pkey)
            if st is None:
                continue
            value = leaf.value
            vh = hasher.shared(value)  # the same in every replica: the HyperLogLogs leave the process
            # types
            if not (st.mask & TYPE_BITS["text"]) or value[:1] in "{[":
                vtype = value_type(value)
                bit = TYPE_BITS[vtype]
                if not st.mask & bit:
                    if not learned:
                        st.mask |= bit
                    elif covered(st.mask, vtype):
                        pass
                    elif st.mask == 0 and st.invisible < pp.params.min_invisible:
                        st.mask |= bit  # no typed history: the first visible value teaches the type
                    else:
                        self._unseen_type(ep, st, pkey, vtype, obs, ts=ts)
            idh = hasher.fast(ep.key[0] + "\x00" + value) if is_id and principal is not None else 0
            # enumeration by one client; ids that were returned to this very principal are its own
            # objects (a power user paging through their orders), not guesses
            pkey = st.key  # the endpoint's tuple, shared by every pair (not one per request)
            enum = pair.enum
            if enum is None:
                enum = pair.enum = {}
            old = enum.get(pkey)
            if (old is None and len(enum) >= pp.caps.enum_params_per_pair) or (
                idh and self._owners.get(idh) == principal
            ):
                pass
            else:
                bits = bitmap_add(old or 0, vh)
                if bits != old:
                    enum[pkey] = bits
                    if learned:
                        distinct = bitmap_count(bits)
                        q99 = st.enum_q.value if st.enum_q is not None else 0.0
                        limit = max(
                            float(dp.enum_min),
                            dp.enum_factor * q99,
                            dp.enum_factor * (pair.enum_prev.get(pkey, 0.0) if pair.enum_prev else 0.0),
                        )
                        if distinct > limit:
                            self._hit(
                                "API_ParameterEnumeration", ep, obs, ts,
                                {
                                    "location": pkey[0], "param": pkey[1][:128], "observed": round(distinct),
                                    "threshold": round(limit, 1), "baseline": round(q99, 1),
                                    "window_seconds": window,
                                },
                            )  # fmt: skip
            # distinct values across all clients
            if st.hll is None and ep.requests >= _HLL_MIN_REQUESTS:
                if self._hll_count + 2 <= pp.caps.hll_sketches:
                    st.hll = Hll(10)
                    st.miss = Hll(10)
                    # Epoch-aligned windows, so every replica's sketch of a window covers the same
                    # interval (the collector merges them); the first one is partial: warm-up only.
                    st.hll_start = ts - ts % window
                    st.hll_windows = -1
                    self._hll_count += 2
                else:
                    self.counters.hll_refused += 1
            if st.hll is not None:
                if ts - st.hll_start >= window:  # the first value after the window's end opens the next
                    self._close_distinct(ep, st, ts)
                st.hll.add(vh)
                if miss and st.miss is not None:
                    st.miss.add(vh)
                st.hll_ips = bitmap_add(st.hll_ips, hasher.fast(obs.client.ip))
                if not st.touched:
                    st.touched = True
                    self._touched_params.append((ep, st))
            if idh and ok:
                request_ids.append(idh)
        if seen_body is not None or obs.params:
            for pkey in obs.params:
                if pkey[0] == "body" and (seen_body is None or pkey[1] not in seen_body):
                    st = ep.params.get(pkey)
                    if st is not None and not learned:
                        st.invisible += 1
                    elif st is None and not learned:
                        st = self._param_state(ep, pkey)
                        if st is not None:
                            st.invisible += 1
        if request_ids and principal is not None:
            self._bola_check(ep, obs, principal, request_ids, ts=ts, learned=learned)

    def _unseen_type(
        self, ep: _Endpoint, st: _Param, pkey: tuple[str, str], vtype: str, obs: Observation, *, ts: float
    ) -> None:
        if st.pending is None:
            st.pending = {}
        ips = st.pending.get(vtype)
        if ips is None:
            ips = st.pending[vtype] = set()
        ips.add(obs.client.ip)
        if len(ips) >= self.policy.params.promote_clients:
            st.mask |= TYPE_BITS[vtype]
            del st.pending[vtype]
            return
        known = [name for name, bit in TYPE_BITS.items() if st.mask & bit]
        self._hit(
            "API_UnseenParamType", ep, obs, ts,
            {"location": pkey[0], "param": pkey[1][:128], "observed": vtype, "baseline": known,
             "threshold": "known types"},
        )  # fmt: skip

    def _own(self, h: int, principal: str) -> None:
        owner = self._owners.get(h)
        if owner is None:
            if lru_put(self._owners, h, principal, self.policy.caps.object_ids) is not None:
                self._evicted("object_ids")
        elif owner not in (principal, _SHARED):
            self._owners[h] = _SHARED

    def _bola_check(
        self, ep: _Endpoint, obs: Observation, principal: str, ids: list[int], *, ts: float, learned: bool
    ) -> None:
        bp = self.policy.bola
        owners = self._owners
        foreign: list[int] = []
        unknown: list[int] = []
        for h in ids:
            owner = owners.get(h)
            if owner is None:
                unknown.append(h)
            elif owner not in (principal, _SHARED):
                foreign.append(h)
        if not learned:
            ep.id_refs += 1
            ep.id_foreign += bool(foreign)
            ep.id_known += not foreign and not unknown
            return
        if ep.id_refs < bp.min_references:
            return
        if ep.id_foreign > bp.max_benign_foreign * ep.id_refs or ep.id_known < bp.min_known_share * ep.id_refs:
            return  # ids on this endpoint are shared, or not tracked well enough to judge
        if not foreign and not unknown:
            return
        key = (principal, ep.eid)
        st = lru_get(self._bola, key)
        if st is None or ts - st.start >= self.policy.distinct.window_seconds:
            st = _Tally(ts)
            if lru_put(self._bola, key, st, self.policy.caps.principals) is not None:
                self._evicted("principals")
        for h in foreign:
            st.a = bitmap_add(st.a, h)
        for h in foreign + unknown:
            st.b = bitmap_add(st.b, h)
        nf, nw = bitmap_count(st.a), bitmap_count(st.b)
        base = {
            "baseline": round(ep.id_foreign / max(ep.id_refs, 1), 4), "baseline_meaning": "learned foreign-id share",
            "window_seconds": self.policy.distinct.window_seconds, "principal": principal,
        }  # fmt: skip
        if foreign and nf >= bp.min_foreign:
            self._hit("API_BOLA", ep, obs, ts, {**base, "variant": "foreign_ids", "observed": round(nf),
                                                "threshold": bp.min_foreign})  # fmt: skip
        elif nw >= bp.walk_distinct:
            self._hit("API_BOLA", ep, obs, ts, {**base, "variant": "id_walk", "observed": round(nw),
                                                "threshold": bp.walk_distinct})  # fmt: skip

    def _username(self, obs: Observation, leaves: Sequence[Leaf]) -> str | None:
        keys = self._user_keys
        for leaf in leaves:
            if leaf.location in ("request_body", "query") and leaf.key.lower() in keys:
                return leaf.value
        principal = obs.auth.principal
        if principal is not None and principal.startswith(("basic:", "digest:")):
            return principal
        return None

    def _auth_failure(
        self, ep: _Endpoint, client: _Client, obs: Observation, leaves: Sequence[Leaf], *, ts: float, learned: bool
    ) -> None:
        ap = self.policy.auth
        window = ap.window_seconds
        user = self._username(obs, leaves)
        uh = self.hasher.fast(user) if user is not None else None
        iph = self.hasher.fast(obs.client.ip)
        if ts - client.auth_start >= window:
            client.auth_start, client.auth_fails, client.auth_users = ts, 0, 0
        client.auth_fails += 1
        if uh is not None:
            client.auth_users = bitmap_add(client.auth_users, uh)
        if ts - ep.fail_start >= window:
            if ep.fail_start:
                ep.fail_base = ep.fails if ep.fail_windows == 0 else ep.fail_base + 0.2 * (ep.fails - ep.fail_base)
                ep.fail_windows += 1
            ep.fail_start, ep.fails, ep.fail_users, ep.fail_ips = ts, 0, 0, 0
        ep.fails += 1
        ep.fail_ips = bitmap_add(ep.fail_ips, iph)
        if uh is not None:
            ep.fail_users = bitmap_add(ep.fail_users, uh)
        ust: _Tally | None = None
        if uh is not None:
            ust = lru_get(self._users, uh)
            if ust is None or ts - ust.start >= window:
                ust = _Tally(ts)
                if lru_put(self._users, uh, ust, self.policy.caps.usernames) is not None:
                    self._evicted("usernames")
            ust.count += 1
            ust.b = bitmap_add(ust.b, iph)
        if not learned:
            return
        user_token = self.hasher.stable("user", user) if user is not None else None
        users = bitmap_count(client.auth_users)
        common = {"window_seconds": window, "status": obs.status}
        if users >= ap.stuffing_usernames:
            self._hit("API_CredentialStuffing", ep, obs, ts,
                      {**common, "variant": "single_ip", "observed": round(users), "threshold": ap.stuffing_usernames,
                       "baseline": 1, "failures": client.auth_fails})  # fmt: skip
        elif client.auth_fails >= ap.bruteforce_ip_failures:
            self._hit("API_BruteForce", ep, obs, ts,
                      {**common, "variant": "per_ip", "observed": client.auth_fails,
                       "threshold": ap.bruteforce_ip_failures, "baseline": 0,
                       "distinct_users": round(users)})  # fmt: skip
        if ust is not None and ust.count >= ap.bruteforce_user_failures:
            ips = bitmap_count(ust.b)
            self._hit("API_BruteForce", ep, obs, ts,
                      {**common, "variant": "per_user" if ips < 3 else "per_user_distributed",
                       "user": user_token, "observed": ust.count, "threshold": ap.bruteforce_user_failures,
                       "baseline": 0, "distinct_ips": round(ips)},
                      principal=user_token)  # fmt: skip
        if ep.fail_windows >= 1:
            eu, ei = bitmap_count(ep.fail_users), bitmap_count(ep.fail_ips)
            limit = max(ap.distributed_factor * ep.fail_base, float(ap.distributed_usernames))
            if eu >= ap.distributed_usernames and ei >= ap.distributed_ips and ep.fails > limit:
                self._hit("API_CredentialStuffing", ep, obs, ts,
                          {**common, "variant": "distributed", "observed": ep.fails, "threshold": round(limit, 1),
                           "baseline": round(ep.fail_base, 1), "distinct_users": round(eu),
                           "distinct_ips": round(ei)},
                          client=False)  # fmt: skip

    def _accepted(self, ep: _Endpoint, obs: Observation, *, ts: float, learned: bool) -> None:
        auth = obs.auth
        jwt = auth.jwt
        if jwt is not None and (jwt.unsigned or jwt.expired or (jwt.alg or "").lower() == "none"):
            # Deterministic evidence, not a statistic: no learning period.
            variant = "alg_none" if (jwt.alg or "").lower() == "none" else "unsigned" if jwt.unsigned else "expired"
            self._hit("API_BrokenAuthentication", ep, obs, ts,
                      {"variant": variant, "observed": f"{obs.status} to {variant} JWT", "baseline": "rejected",
                       "threshold": "any 2xx", "jwt_alg": (jwt.alg or "")[:16], "jwt_exp": jwt.exp})  # fmt: skip
        ap = self.policy.auth
        if auth.has_credential:
            ep.auth_ok += 1
        elif not learned:
            ep.noauth_ok += 1
        elif ep.auth_ok >= ap.min_authenticated:
            share = ep.auth_ok / (ep.auth_ok + ep.noauth_ok)
            if share >= ap.authenticated_share:
                self._hit("API_BrokenAuthentication", ep, obs, ts,
                          {"variant": "no_credential", "observed": "2xx without credential",
                           "baseline": round(share, 4), "baseline_meaning": "share of 2xx carrying a credential",
                           "threshold": ap.authenticated_share})  # fmt: skip
        # sensitive data types in the response
        if not learned:
            ep.ok_responses += 1
            for dt in obs.data_types:
                if dt.location == "response_body":
                    ep.resp_types[dt.type] = ep.resp_types.get(dt.type, 0) + 1
            return
        if not obs.data_types or ep.ok_responses == 0:
            return
        min_share = self.policy.exposure.min_type_share
        for dt in obs.data_types:
            if dt.location != "response_body":
                continue
            seen = ep.resp_types.get(dt.type, 0)
            if seen > min_share * ep.ok_responses:
                continue
            ips = ep.pending_types.get(dt.type)
            if ips is None:
                if len(ep.pending_types) >= 64:
                    continue
                ips = ep.pending_types[dt.type] = set()
            ips.add(obs.client.ip)
            if len(ips) >= self.policy.params.promote_clients:
                ep.resp_types[dt.type] = ep.ok_responses  # promoted: normal from now on
                del ep.pending_types[dt.type]
                continue
            self._hit("API_ExcessiveDataExposure", ep, obs, ts,
                      {"variant": "unusual_data_type", "data_type": dt.type, "path": dt.path[:256],
                       "observed": dt.count, "baseline": round(seen / ep.ok_responses, 5),
                       "baseline_meaning": "share of 2xx responses that carried this type",
                       "threshold": min_share})  # fmt: skip

    # ------------------------------------------------------------------------------------------
    # alert grouping

    def _hit(
        self,
        type_: str,
        ep: _Endpoint,
        obs: Observation | None,
        ts: float,
        evidence: dict[str, object],
        *,
        client: bool = True,
        principal: str | None = None,
    ) -> None:
        if self._silent or type_ in self._disabled:
            return
        self.counters.hits += 1
        ip = obs.client.ip if (client and obs is not None) else ""
        who = principal if principal is not None else (obs.auth.principal if (client and obs is not None) else None)
        width = self.policy.alert_window_seconds
        wstart = ts - ts % width
        gkey = (type_, ep.key, ip, who or "", wstart)
        group = self._groups.get(gkey)
        if group is None:
            if len(self._groups) >= self.policy.caps.groups:
                self.counters.groups_dropped += 1
                return
            group = self._groups[gkey] = _Group(
                type_, ep.alert_ep, AlertClient(ip=ip or None, principal=who), ts, wstart + width
            )
        group.count += 1
        if ts < group.first:  # noqa: PLR1730 (a compare is cheaper than min())
            group.first = ts
        if ts > group.last:  # noqa: PLR1730
            group.last = ts
        group.evidence = evidence

    def drain(self, now: float, *, force: bool = False) -> list[AlertEvent]:
        """Alerts to ship: groups seen for the first time, and closed groups' remaining hits.
        Also runs the once-a-second batch work (bucket roll, sketch estimates, list reloads).
        ``force`` closes every group now (shutdown, demo end) so no counted hit stays unshipped."""
        if self._bucket_start >= 0 and now >= self._bucket_end:
            self._roll(now)
        if now >= self._next_reload and self.iplists.feeds:
            self._next_reload = now + self.policy.iplists_reload_seconds
            if self.iplists.reload():
                self.counters.iplist_reloads += 1
        self._distributed(now)
        if len(self._spray_sample) >= 50:
            p99 = float(np.percentile(np.asarray(self._spray_sample), 99.0))
            dp = self.policy.distinct
            self._spray_thresh = max(float(dp.spray_min), dp.spray_factor * p99)
        out: list[AlertEvent] = []
        done: list[tuple[str, tuple[str, str, str], str, str, float]] = []
        for gkey, g in self._groups.items():
            closed = force or now >= g.window_end
            if g.emitted == 0 or (closed and g.count > g.emitted):
                out.append(self._event(g, g.count - g.emitted))
                g.emitted = g.count
            if closed:
                done.append(gkey)
        for gkey in done:
            del self._groups[gkey]
        self.counters.alerts_emitted += len(out)
        return out

    def _event(self, g: _Group, count: int) -> AlertEvent:
        title, severity = ALERT_TYPES.get(g.type, (g.type, "medium"))
        evidence = dict(g.evidence)
        evidence["first_seen"] = _iso(g.first)
        evidence["last_seen"] = _iso(g.last)
        evidence.setdefault("window_seconds", self.policy.alert_window_seconds)
        return AlertEvent(
            type=g.type,
            title=title,
            severity=severity,
            endpoint=g.endpoint,
            client=g.client,
            first_seen=datetime.fromtimestamp(g.first, UTC),
            last_seen=datetime.fromtimestamp(g.last, UTC),
            count=count,
            evidence=evidence,
        )

    def _close_distinct(
        self, ep: _Endpoint, st: _Param, now: float, est: float | None = None, est_miss: float | None = None
    ) -> None:
        """Close an (endpoint, parameter) distinct window: its final registers go to the collector
        (fleet view), its counts join the baselines (EWMA, winsorised so an attack window does not
        become normal, and a decaying peak that keeps busy hours normal), and the next epoch-aligned
        window starts. Runs at drain, or on the request path for the first value after the window's
        end (once per parameter per window: the estimate costs one small numpy call then)."""
        hll, miss = st.hll, st.miss
        if hll is None or miss is None:
            return
        if est is None or est_miss is None:
            est, est_miss = hll_estimates([hll.regs, miss.regs])
        dp = self.policy.distinct
        self._ship_live.pop((ep.key, st.key), None)
        self._ship_closed[(ep.key, st.key, st.hll_start)] = bytes(hll.regs)
        if len(self._ship_closed) > self.policy.caps.hll_sketches:
            del self._ship_closed[next(iter(self._ship_closed))]
            self.counters.sketches_dropped += 1
        decay = 0.5 ** ((now - st.hll_start) / self.policy.rate.peak_half_life_seconds)
        cap = dp.distributed_factor
        if st.hll_windows <= 0:  # -1: the partial first window; 0: the first whole one
            st.hll_base, st.miss_base = est, est_miss
        else:
            st.hll_base += 0.3 * (min(est, cap * max(st.hll_base, 1.0)) - st.hll_base)
            st.miss_base += 0.3 * (min(est_miss, cap * max(st.miss_base, 1.0)) - st.miss_base)
        st.hll_peak = max(st.hll_peak * decay, est)
        st.miss_peak = max(st.miss_peak * decay, est_miss)
        st.hll_windows += 1
        hll.clear()
        miss.clear()
        st.hll_ips = 0
        st.hll_start = now - now % dp.window_seconds

    def _distributed(self, now: float) -> None:
        """Estimate the HyperLogLogs touched since the last drain in one numpy call; roll the
        (endpoint, parameter) windows that ended."""
        touched = self._touched_params
        if not touched:
            return
        self._touched_params = []
        live = [(ep, st, st.hll, st.miss) for ep, st in touched if st.hll is not None and st.miss is not None]
        regs: list[bytearray] = []
        for _, _, hll, miss in live:
            regs.append(hll.regs)
            regs.append(miss.regs)
        estimates = hll_estimates(regs)
        dp = self.policy.distinct
        for i, (ep, st, _, _) in enumerate(live):
            st.touched = False
            est, est_miss = estimates[2 * i], estimates[2 * i + 1]
            if now - st.hll_start >= dp.window_seconds:
                self._close_distinct(ep, st, now, est, est_miss)
                continue
            ship = self._ship_live
            ship[(ep.key, st.key)] = (ep, st)
            if len(ship) > self.policy.caps.hll_sketches:  # leftovers of endpoints not summarised since
                del ship[next(iter(ship))]
                self.counters.sketches_dropped += 1
            if not ep.learned or st.hll_windows < 1 or self._silent:
                continue
            for variant, observed, base in (
                ("failed_values", est_miss, max(st.miss_base, 0.5 * st.miss_peak)),
                ("all_values", est, max(st.hll_base, 0.5 * st.hll_peak)),
            ):
                limit = max(float(dp.distributed_min), dp.distributed_factor * base)
                if observed > limit:
                    pkey = next((k for k, v in ep.params.items() if v is st), ("?", "?"))
                    self._hit(
                        "API_DistributedParameterEnumeration", ep, None, now,
                        {
                            "variant": variant, "location": pkey[0], "param": pkey[1][:128],
                            "observed": round(observed), "threshold": round(limit, 1), "baseline": round(base, 1),
                            "window_seconds": dp.window_seconds, "distinct_ips": round(bitmap_count(st.hll_ips)),
                        },
                        client=False,
                    )  # fmt: skip
                    break

    # ------------------------------------------------------------------------------------------
    # warm start and introspection

    def warm_start(
        self, items: Iterable[tuple[Observation, Exchange, Sequence[Leaf]]], *, complete_learning: bool = True
    ) -> int:
        """Learn from replayed traffic without alerting. With ``complete_learning`` every endpoint that
        saw ``learning.requests`` requests in the replay is live at once (the replay stands in for
        the learning hour). Returns the number of exchanges learned from."""
        self._silent = True
        n = 0
        try:
            for obs, ex, leaves in items:
                self.observe(obs, ex, leaves)
                n += 1
        finally:
            self._silent = False
        if complete_learning:
            for ep in self._endpoints.values():
                if ep.requests >= self.policy.learning.requests:
                    ep.learned = True
            if self._total >= self.policy.learning.requests:
                self._global_done = True
        self._groups.clear()
        return n

    # ------------------------------------------------------------------------------------------
    # fleet view: distinct-value sketches for the collector

    def take_param_sketches(
        self, endpoints: Container[tuple[str, str, str]], per_endpoint: int, limit: int
    ) -> list[ParamSketchItem]:
        """Sketches to ship with the summaries of ``endpoints`` ((api, method, template) keys):
        ``(endpoint, (location, name), window_start, registers)``. Final registers of closed windows
        come first, then the cumulative registers of the live windows touched since the last take
        (max-merge at the collector makes a repeat harmless). At most ``per_endpoint`` per endpoint
        and ``limit`` in all; what is left, and other endpoints' sketches, wait for the next take.
        The work is proportional to the sketches waiting (bounded by ``caps.hll_sketches``)."""
        out: list[ParamSketchItem] = []
        per: dict[tuple[str, str, str], int] = {}
        for ckey in list(self._ship_closed):
            ep_key = ckey[0]
            if len(out) >= limit:
                return out
            if ep_key in endpoints and per.get(ep_key, 0) < per_endpoint:
                per[ep_key] = per.get(ep_key, 0) + 1
                out.append((ep_key, ckey[1], ckey[2], self._ship_closed.pop(ckey)))
        for lkey in list(self._ship_live):
            ep_key = lkey[0]
            if len(out) >= limit:
                return out
            if ep_key in endpoints and per.get(ep_key, 0) < per_endpoint:
                _, st = self._ship_live.pop(lkey)
                if st.hll is not None:
                    per[ep_key] = per.get(ep_key, 0) + 1
                    out.append((ep_key, lkey[1], st.hll_start, bytes(st.hll.regs)))
        return out

    def sizes(self) -> dict[str, int]:
        """Current table sizes (for metrics and the memory test)."""
        return {
            "endpoints": len(self._endpoints),
            "pairs": len(self._pairs),
            "clients": len(self._clients),
            "object_ids": len(self._owners),
            "principals": len(self._bola),
            "usernames": len(self._users),
            "hll_sketches": self._hll_count,
            "groups": len(self._groups),
            "ip_cache": len(self._ip_verdicts),
            "ua_cache": len(self._ua_verdicts),
        }
