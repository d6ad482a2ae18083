"""Windowed aggregation of ``Observation`` s into per-endpoint ``EndpointSummary`` s.

This is part of the pure core: no IO, no clocks of its own (windows follow the observations'
timestamps, draining follows the ``now`` the caller passes), so it is tested without sockets.

``add`` is on the request path, so it does constant work per observation with plain Python
containers; numpy is only used in ``drain`` (once per endpoint per window) to turn the bounded
samples into percentiles. Every per-window structure is bounded, and whatever does not fit is counted
rather than silently lost:

- endpoints per window: beyond ``max_endpoints`` keys, observations fold into one overflow key per
  (api, method) with the template ``/{overflow}``, so request totals always add up;
- sizes and latency: a reservoir sample of ``sample_cap`` observations (max is exact);
- distinct clients: an exact set up to ``distinct_cap``, then a lower bound flagged as capped;
- params and data types per endpoint: the first ``max_params`` / ``max_data_types`` distinct keys.

JWT facts (``EndpointSummary.jwt_facts``) count requests per fact of the token they carried, as the
sensor decoded it (unverified): a fixed set of keys (``JWT_FACTS``), so they are bounded too.
"""

from __future__ import annotations

import random
from array import array
from datetime import UTC, datetime

import numpy as np

from sensor.events import DataTypeSeen, Distribution, EndpointSummary, ParamSeen
from sensor.observation import Observation

OVERFLOW_TEMPLATE = "/{overflow}"
# When even the per-(api, method) overflow keys would grow without limit (the method is whatever the
# client sent), everything else lands in one last-resort key.
_MAX_OVERFLOW_KEYS = 64
_LAST_RESORT_KEY = ("{overflow}", "OTHER", OVERFLOW_TEMPLATE)

# Indexed by status // 100; 0 means no response (matches ``Observation.status_class``).
_STATUS_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")

# Requests per JWT fact; the collector stores these names (collector.store.rows.JWT_FACTS) and judges
# them (collector.posture, finding "weak_tokens").
JWT_FACTS = (
    "jwt",  # carried a JWT (any of the below is a subset of these requests)
    "unsigned",  # alg "none", or no / an empty signature segment
    "alg_none",  # alg "none" (case-insensitive)
    "unsigned_accepted",  # unsigned and answered 2xx: the backend accepted a forgeable token
    "symmetric",  # signed with HS256 / HS384 / HS512 (a shared secret)
    "no_exp",  # readable claims without "exp"
    "long_lifetime",  # exp - iat over 24 h (exp - request time when there is no iat)
    "expired",  # exp in the past when the request was seen
)
LONG_LIFETIME_SECONDS = 24 * 3600
_SYMMETRIC_ALGS = frozenset({"HS256", "HS384", "HS512"})
# JWE key management algorithms (RFC 7518 4.1 and the IANA registry): the claims of such a token are
# encrypted, so a missing exp says nothing.
_JWE_ALGS = frozenset(
    {
        "RSA1_5", "RSA-OAEP", "RSA-OAEP-256", "RSA-OAEP-384", "RSA-OAEP-512", "A128KW", "A192KW", "A256KW",
        "dir", "ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW", "A128GCMKW", "A192GCMKW",
        "A256GCMKW", "PBES2-HS256+A128KW", "PBES2-HS384+A192KW", "PBES2-HS512+A256KW",
    }
)

_Key = tuple[str, str, str]  # (api, method, template)
_DataKey = tuple[str, str, str, str]  # (type, location, path, status_class)


class _Acc:
    """Mutable accumulator for one endpoint in one window (internal; plain slots for speed)."""

    __slots__ = (
        "auth_schemes",
        "authenticated_success",
        "clients",
        "clients_capped",
        "data_types",
        "external_requests",
        "first_seen",
        "from_spec",
        "jwt_facts",
        "last_external",
        "last_seen",
        "latency",
        "latency_max",
        "name",
        "params",
        "plaintext_requests",
        "req_max",
        "req_sizes",
        "requests",
        "resp_max",
        "resp_sizes",
        "status_classes",
        "unauthenticated_rejected",
        "unauthenticated_success",
    )

    def __init__(self, ts: float, name: str | None, from_spec: bool) -> None:
        self.requests = 0
        self.first_seen = ts
        self.last_seen = ts
        self.name = name
        self.from_spec = from_spec
        self.status_classes: dict[str, int] = {}
        self.auth_schemes: dict[str, int] = {}
        self.unauthenticated_success = 0
        self.authenticated_success = 0
        self.unauthenticated_rejected = 0
        self.external_requests = 0
        self.last_external: float | None = None
        self.plaintext_requests = 0
        # One reservoir of observations, stored as three parallel lists: a single random draw per
        # observation keeps all three distributions a uniform sample of the same requests.
        # C doubles rather than lists: drain hands them to numpy as raw buffers (no per-float boxing).
        self.req_sizes: array[float] = array("d")
        self.resp_sizes: array[float] = array("d")
        self.latency: array[float] = array("d")
        self.req_max = 0.0
        self.resp_max = 0.0
        self.latency_max = 0.0
        self.params: dict[tuple[str, str], int] = {}
        self.data_types: dict[_DataKey, int] = {}
        self.clients: set[str] = set()
        self.clients_capped = False
        self.jwt_facts: dict[str, int] = {}


class _Window:
    """The accumulators of one window, with the bookkeeping that keeps it bounded in O(1)."""

    __slots__ = ("accs", "overflow_keys", "regular_keys")

    def __init__(self) -> None:
        self.accs: dict[_Key, _Acc] = {}
        self.regular_keys = 0
        self.overflow_keys = 0


class ClosedWindows:
    """Windows detached from the aggregator by ``take``, waiting for ``summarise`` (opaque)."""

    __slots__ = ("width", "windows")

    def __init__(self, width: float, windows: list[tuple[float, dict[_Key, _Acc]]]) -> None:
        self.width = width
        self.windows = windows

    def __len__(self) -> int:
        return sum(len(accs) for _, accs in self.windows)


class SummaryAggregator:
    """Aggregates observations per (api, method, template) per aligned window.

    Windows are ``[k * window_seconds, (k + 1) * window_seconds)`` on the epoch clock, chosen by the
    observation's own timestamp, so that sensors (and replays) agree on window boundaries.
    """

    def __init__(
        self,
        window_seconds: float,
        *,
        max_endpoints: int = 10000,
        sample_cap: int = 512,
        distinct_cap: int = 4096,
        max_params: int = 256,
        max_data_types: int = 256,
        seed: int = 0x5EED,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if min(max_endpoints, sample_cap, distinct_cap, max_params, max_data_types) < 1:
            raise ValueError("caps must be at least 1")
        self.window_seconds = float(window_seconds)
        self.max_endpoints = max_endpoints
        self.sample_cap = sample_cap
        self.distinct_cap = distinct_cap
        self.max_params = max_params
        self.max_data_types = max_data_types
        # Deterministic so that tests and replays give the same summaries run after run.
        self._rng = random.Random(seed)
        self._windows: dict[float, _Window] = {}
        # Counters (cumulative, for metrics).
        self.total_observations = 0
        self.overflow_observations = 0  # observations folded into an overflow key
        self.dropped_params = 0  # param occurrences not recorded because an endpoint hit max_params
        self.dropped_data_types = 0  # data type findings not recorded (max_data_types)

    # -- hot path -------------------------------------------------------------------------------

    def add(self, obs: Observation) -> None:
        ts = obs.timestamp
        width = self.window_seconds
        start = ts - ts % width
        window = self._windows.get(start)
        if window is None:
            window = self._windows[start] = _Window()
        route = obs.route
        key = (route.api, obs.method, route.template)
        acc = window.accs.get(key)
        if acc is None:
            acc = self._new_acc(window, key, obs)
        self.total_observations += 1

        acc.requests += 1
        if ts < acc.first_seen:  # noqa: PLR1730 (a compare is ~3x cheaper than min())
            acc.first_seen = ts
        if ts > acc.last_seen:  # noqa: PLR1730
            acc.last_seen = ts

        status = obs.status
        status_class = _STATUS_CLASSES[status // 100] if 0 <= status < 600 else f"{status // 100}xx"
        sc = acc.status_classes
        sc[status_class] = sc.get(status_class, 0) + 1

        auth = obs.auth
        schemes = auth.schemes or ("none",)
        counts = acc.auth_schemes
        for scheme in schemes:
            counts[scheme] = counts.get(scheme, 0) + 1
        if 200 <= status < 300:
            if auth.has_credential:
                acc.authenticated_success += 1
            else:
                acc.unauthenticated_success += 1
        elif status in (401, 403) and not auth.has_credential:
            acc.unauthenticated_rejected += 1
        jwt = auth.jwt
        if jwt is not None:
            # A few dict increments per token-bearing request; the keys are JWT_FACTS.
            jf = acc.jwt_facts
            jf["jwt"] = jf.get("jwt", 0) + 1
            alg = jwt.alg
            if jwt.unsigned:
                jf["unsigned"] = jf.get("unsigned", 0) + 1
                if alg is not None and alg.lower() == "none":
                    jf["alg_none"] = jf.get("alg_none", 0) + 1
                if 200 <= status < 300:
                    jf["unsigned_accepted"] = jf.get("unsigned_accepted", 0) + 1
            elif alg in _SYMMETRIC_ALGS:
                jf["symmetric"] = jf.get("symmetric", 0) + 1
            if jwt.expired:
                jf["expired"] = jf.get("expired", 0) + 1
            if not jwt.malformed and alg not in _JWE_ALGS:  # the claims were readable
                exp = jwt.exp
                if exp is None:
                    jf["no_exp"] = jf.get("no_exp", 0) + 1
                elif exp - (ts if jwt.iat is None else jwt.iat) > LONG_LIFETIME_SECONDS:
                    jf["long_lifetime"] = jf.get("long_lifetime", 0) + 1

        client = obs.client
        if client.external:
            acc.external_requests += 1
            if acc.last_external is None or ts > acc.last_external:
                acc.last_external = ts
        if obs.scheme == "http":
            acc.plaintext_requests += 1

        req = float(obs.request_size)
        resp = float(obs.response_size)
        lat = float(obs.latency_ms)
        if req > acc.req_max:  # noqa: PLR1730
            acc.req_max = req
        if resp > acc.resp_max:  # noqa: PLR1730
            acc.resp_max = resp
        if lat > acc.latency_max:  # noqa: PLR1730
            acc.latency_max = lat
        n = len(acc.latency)
        if n < self.sample_cap:
            acc.req_sizes.append(req)
            acc.resp_sizes.append(resp)
            acc.latency.append(lat)
        else:
            # Algorithm R: keep each of the `requests` observations with probability cap/requests.
            j = int(self._rng.random() * acc.requests)
            if j < n:
                acc.req_sizes[j] = req
                acc.resp_sizes[j] = resp
                acc.latency[j] = lat

        if obs.params:
            params = acc.params
            for pkey in obs.params:
                c = params.get(pkey)
                if c is not None:
                    params[pkey] = c + 1
                elif len(params) < self.max_params:
                    params[pkey] = 1
                else:
                    self.dropped_params += 1

        if obs.data_types:
            dts = acc.data_types
            for dt in obs.data_types:
                dt_status = dt.status_class
                if not dt_status and dt.location == "response_body":
                    # A response finding is only useful with the status class that carried it.
                    dt_status = status_class
                dkey = (dt.type, dt.location, dt.path, dt_status)
                c = dts.get(dkey)
                if c is not None:
                    dts[dkey] = c + dt.count
                elif len(dts) < self.max_data_types:
                    dts[dkey] = dt.count
                else:
                    self.dropped_data_types += 1

        clients = acc.clients
        ip = client.ip
        if ip not in clients:
            if len(clients) < self.distinct_cap:
                clients.add(ip)
            else:
                acc.clients_capped = True

    def _new_acc(self, window: _Window, key: _Key, obs: Observation) -> _Acc:
        """Create the accumulator for a new key, or resolve the overflow key when the window is full."""
        route = obs.route
        accs = window.accs
        if window.regular_keys < self.max_endpoints:
            window.regular_keys += 1
            acc = accs[key] = _Acc(obs.timestamp, route.name, route.from_spec)
            return acc
        self.overflow_observations += 1
        okey: _Key = (route.api, obs.method, OVERFLOW_TEMPLATE)
        found = accs.get(okey)
        if found is not None:
            return found
        if window.overflow_keys >= _MAX_OVERFLOW_KEYS:
            okey = _LAST_RESORT_KEY
            found = accs.get(okey)
            if found is not None:
                return found
        window.overflow_keys += 1
        acc = accs[okey] = _Acc(obs.timestamp, None, False)
        return acc

    # -- drain ----------------------------------------------------------------------------------

    def open_windows(self) -> int:
        return len(self._windows)

    def pending_endpoints(self) -> int:
        return sum(len(w.accs) for w in self._windows.values())

    def drain(self, now: float, *, force: bool = False) -> list[EndpointSummary]:
        """Return and forget the summaries of windows that have ended by ``now`` (all with ``force``).

        Summaries come out ordered by window, then by (api, method, template). This is
        ``summarise(take(now, force=force))``; at ~10k busy endpoints the numpy part costs a few hundred
        ms, so a caller on an event loop can ``take`` on the loop and ``summarise`` in a worker thread.
        """
        return self.summarise(self.take(now, force=force))

    def take(self, now: float, *, force: bool = False) -> ClosedWindows:
        """Detach the windows that have ended by ``now``; ``add`` never touches them again."""
        width = self.window_seconds
        ready = sorted(s for s in self._windows if force or s + width <= now)
        return ClosedWindows(width, [(start, self._windows.pop(start).accs) for start in ready])

    def summarise(self, closed: ClosedWindows) -> list[EndpointSummary]:
        """Build the summaries of detached windows (pure: safe to run off the event loop)."""
        items: list[tuple[float, _Key, _Acc]] = []
        for start, accs in closed.windows:
            items.extend((start, key, accs[key]) for key in sorted(accs))
        pcts = _percentiles([acc for _, _, acc in items])
        out: list[EndpointSummary] = []
        bounds: dict[float, tuple[datetime, datetime]] = {}
        for (start, key, acc), pct in zip(items, pcts, strict=True):
            if start not in bounds:
                bounds[start] = (_dt(start), _dt(start + closed.width))
            out.append(self._summary(key, acc, pct, *bounds[start]))
        return out

    @staticmethod
    def _summary(
        key: _Key, acc: _Acc, pct: _Pct | None, window_start: datetime, window_end: datetime
    ) -> EndpointSummary:
        api, method, template = key
        request_size, response_size, latency_ms = _distributions(acc, pct)
        return EndpointSummary(
            api=api,
            method=method,
            path=template,
            window_start=window_start,
            window_end=window_end,
            first_seen=_dt(acc.first_seen),
            last_seen=_dt(acc.last_seen),
            requests=acc.requests,
            name=acc.name,
            from_spec=acc.from_spec,
            status_classes=dict(sorted(acc.status_classes.items())),
            auth_schemes=dict(sorted(acc.auth_schemes.items())),
            unauthenticated_success=acc.unauthenticated_success,
            authenticated_success=acc.authenticated_success,
            unauthenticated_rejected=acc.unauthenticated_rejected,
            external_requests=acc.external_requests,
            last_external=None if acc.last_external is None else _dt(acc.last_external),
            plaintext_requests=acc.plaintext_requests,
            request_size=request_size,
            response_size=response_size,
            latency_ms=latency_ms,
            params=[ParamSeen(location=loc, name=name, count=c) for (loc, name), c in acc.params.items()],
            data_types=[
                DataTypeSeen(type=t, location=loc, path=path, status_class=sc, count=c)
                for (t, loc, path, sc), c in acc.data_types.items()
            ],
            distinct_clients=len(acc.clients),
            distinct_clients_capped=acc.clients_capped,
            jwt_facts=dict(sorted(acc.jwt_facts.items())),
        )


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# Per accumulator: ((p50 req, p50 resp, p50 latency), (p95 req, p95 resp, p95 latency)).
_Pct = list[list[float]]


def _percentiles(accs: list[_Acc]) -> list[_Pct | None]:
    """p50 and p95 of every accumulator's samples, with one numpy call per distinct sample length.

    A call per endpoint costs ~50 us of numpy overhead, i.e. half a second for 10k endpoints; grouping
    by length (most busy endpoints have a full reservoir) makes that one vectorised call.
    """
    groups: dict[int, list[int]] = {}
    for i, acc in enumerate(accs):
        if acc.latency:
            groups.setdefault(len(acc.latency), []).append(i)
    out: list[_Pct | None] = [None] * len(accs)
    for idxs in groups.values():
        n = len(accs[idxs[0]].latency)
        raw = b"".join(part for i in idxs for part in (accs[i].req_sizes, accs[i].resp_sizes, accs[i].latency))
        sample = np.frombuffer(raw, dtype=np.float64).reshape(len(idxs), 3, n)
        # Default "linear" method, shape (2 quantiles, len(idxs), 3 metrics).
        pct: list[list[list[float]]] = np.percentile(sample, [50.0, 95.0], axis=2).tolist()
        for row, i in enumerate(idxs):
            out[i] = [pct[0][row], pct[1][row]]
    return out


def _distributions(acc: _Acc, pct: _Pct | None) -> tuple[Distribution, Distribution, Distribution]:
    """``count`` and ``max`` are exact over all observations; p50/p95 come from the reservoir sample."""
    if pct is None:
        return Distribution(), Distribution(), Distribution()
    n = acc.requests
    p50, p95 = pct
    return (
        Distribution(count=n, p50=p50[0], p95=p95[0], max=acc.req_max),
        Distribution(count=n, p50=p50[1], p95=p95[1], max=acc.resp_max),
        Distribution(count=n, p50=p50[2], p95=p95[2], max=acc.latency_max),
    )
