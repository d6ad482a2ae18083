"""Behaviour thresholds as data: ``policies/behaviour.yaml``, validated with msgspec at load.

Every number a detector compares against lives here, so that tuning is a policy change, not a code
change. A bad file fails with ``file:line: problem`` (the line of the offending YAML node), the same
way the data types and signature files do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

import msgspec

from sensor.yamlnodes import line_of, node_at, read_policy_yaml

__all__ = ["BehaviourError", "BehaviourPolicy", "bundled_behaviour_path", "load_behaviour_policy"]


class BehaviourError(ValueError):
    """A behaviour policy that cannot be used (message: ``file:line: problem``)."""


class Learning(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # An endpoint alerts only once BOTH are reached: an hour covers a traffic cycle of most APIs
    # better than a request count alone, and the count keeps a quiet endpoint from "learning" nothing.
    seconds: float = 3600.0
    requests: int = 1000


class Caps(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Upper bounds of every per-key table (LRU: the least recently seen key is forgotten)."""

    endpoints: int = 5000  # endpoint models (rate rows, size baselines, params, types, auth shares)
    clients: int = 100_000  # per-IP state (spray sketch, auth failure window)
    pairs: int = 50_000  # per (endpoint, IP): rate, size/latency baselines, enumeration sketches
    params_per_endpoint: int = 128  # known parameter names (and their type masks) per endpoint
    enum_params_per_pair: int = 8  # parameters with an enumeration sketch per (endpoint, IP)
    hll_sketches: int = 4096  # (endpoint, parameter) HyperLogLogs for the distributed enumeration
    object_ids: int = 100_000  # BOLA: hashed object id -> hashed principal it was returned to
    principals: int = 20_000  # BOLA: per (principal, endpoint) foreign-id sketches
    usernames: int = 20_000  # brute force: per hashed user name failure windows
    ip_cache: int = 16_384  # IP-list verdicts per client IP
    ua_cache: int = 8192  # user-agent verdicts per distinct user agent
    groups: int = 10_000  # open alert groups; beyond, alerts are counted as dropped


class Rate(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    bucket_seconds: float = 60.0
    alpha: float = 0.1  # EWMA weight of the newest active bucket
    factor: float = 4.0  # observed must exceed factor x baseline ...
    sigmas: float = 6.0  # ... and baseline + sigmas x sd (sd floored at Poisson sqrt(mean))
    peak_half_life_seconds: float = 86_400.0  # a decaying high-water mark keeps diurnal peaks normal
    min_population: int = 100  # requests per bucket below which a population spike never fires
    min_client: int = 60  # requests per bucket below which a client spike never fires
    min_buckets: int = 3  # active buckets before a baseline is trusted


class Sizes(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    alpha: float = 0.05
    sigmas: float = 6.0  # robust sigmas (1.4826 x MAD of log values)
    payload_ratio: float = 8.0  # and at least this many times the baseline median
    latency_ratio: float = 5.0
    min_request_bytes: int = 16_384
    min_response_bytes: int = 65_536
    min_latency_ms: float = 1000.0
    pair_min_samples: int = 20  # a client's own baseline replaces the endpoint's after this many


class Distinct(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    window_seconds: float = 1200.0  # the 20-minute distinct-count window
    spray_min: int = 40  # distinct endpoints per IP per window never below this
    spray_factor: float = 3.0  # x the population's p99 of distinct endpoints per IP
    enum_min: int = 40  # distinct values of one parameter per (IP, endpoint) per window
    enum_factor: float = 4.0  # x the p99 over clients of that (endpoint, parameter)
    distributed_min: int = 500  # distinct values of one parameter across all IPs per window
    distributed_factor: float = 4.0  # x the EWMA of previous windows' distinct counts


class Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    promote_clients: int = 5  # a new parameter (or type) used by this many clients becomes known
    min_invisible: int = 20  # a param seen this often with no visible value counts as typed


class IpList(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    file: str  # relative to the policy file's directory
    alert: str  # API_AccessFromTorExitNode | API_AccessFromSuspiciousIP
    format: str = "plain"  # plain (IP / CIDR per line) | tor (bulk exit list or exit-addresses)
    name: str = ""


class UserAgents(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    tools: list[str] = msgspec.field(default_factory=list)  # case-insensitive substrings (word-ish)
    patterns: list[str] = msgspec.field(default_factory=list)  # regexes for attack content


class Auth(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    window_seconds: float = 300.0
    failure_statuses: list[int] = msgspec.field(default_factory=lambda: [401, 403])
    bruteforce_ip_failures: int = 30  # failures from one IP in a window
    bruteforce_user_failures: int = 15  # failures for one (hashed) user name in a window
    stuffing_usernames: int = 10  # distinct failing user names from one IP
    distributed_usernames: int = 50  # distinct failing user names on one endpoint (all IPs)
    distributed_ips: int = 10  # ... from at least this many IPs
    distributed_factor: float = 4.0  # ... and failures above factor x the previous windows' EWMA
    username_keys: list[str] = msgspec.field(
        default_factory=lambda: ["username", "user", "login", "email", "user_name", "userName"]
    )
    min_authenticated: int = 100  # 2xx-with-credential answers before "normally requires one" holds
    authenticated_share: float = 0.995


class Bola(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    id_keys: list[str] = msgspec.field(default_factory=lambda: ["id", "uuid"])
    id_suffixes: list[str] = msgspec.field(default_factory=lambda: ["_id", "Id", "_uuid"])
    min_foreign: int = 2  # distinct ids owned by other principals, per (principal, endpoint, window)
    walk_distinct: int = 30  # distinct ids never returned to this principal, 2xx, per window
    min_references: int = 50  # id-carrying requests on the endpoint before BOLA is trusted
    max_benign_foreign: float = 0.01  # endpoints whose learned foreign share exceeds this are shared
    min_known_share: float = 0.5  # and ids must mostly have been returned to the requester before


class Exposure(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    min_type_share: float = 0.001  # a response data type under this share of 2xx is "not normal"
    # Records (elements of the response's largest JSON array) per 2xx response, against the endpoint's
    # log-scale median/MAD (the sizes estimator: sizes.sigmas, sizes.alpha): a response must exceed
    # center + max(sigmas x scale, log(records_factor)) and carry at least min_records records.
    records_factor: float = 10.0
    min_records: int = 100


class BehaviourPolicy(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    version: int = 1
    learning: Learning = msgspec.field(default_factory=Learning)
    alert_window_seconds: float = 60.0
    caps: Caps = msgspec.field(default_factory=Caps)
    rate: Rate = msgspec.field(default_factory=Rate)
    sizes: Sizes = msgspec.field(default_factory=Sizes)
    distinct: Distinct = msgspec.field(default_factory=Distinct)
    params: Params = msgspec.field(default_factory=Params)
    iplists: list[IpList] = msgspec.field(default_factory=list)
    iplists_reload_seconds: float = 10.0
    useragents: UserAgents = msgspec.field(default_factory=UserAgents)
    auth: Auth = msgspec.field(default_factory=Auth)
    bola: Bola = msgspec.field(default_factory=Bola)
    exposure: Exposure = msgspec.field(default_factory=Exposure)
    disabled: list[str] = msgspec.field(default_factory=list)  # alert type ids switched off
    # Where relative feed paths resolve (set by the loader; not read from YAML).
    base_dir: str = ""


IP_ALERTS: Final = ("API_AccessFromTorExitNode", "API_AccessFromSuspiciousIP")


def bundled_behaviour_path() -> str:
    return str(Path(__file__).resolve().parent.parent.parent / "policies" / "behaviour.yaml")




def load_behaviour_policy(path: str) -> BehaviourPolicy:
    """Parse and validate one behaviour policy file. Raises ``BehaviourError`` with ``file:line``."""
    data, root = read_policy_yaml(path, BehaviourError)
    data = data or {}
    if not isinstance(data, dict):
        raise BehaviourError(f"{path}:1: expected a mapping at the top level")
    data.pop("base_dir", None)
    try:
        policy = msgspec.convert(data, BehaviourPolicy)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        where = msg.rsplit(" - at `", 1)
        node = node_at(root, where[1].rstrip("`")) if len(where) == 2 else root
        raise BehaviourError(f"{path}:{line_of(node)}: {msg}") from None

    def fail(at: str, problem: str) -> BehaviourError:
        return BehaviourError(f"{path}:{line_of(node_at(root, at))}: {problem}")

    if policy.version != 1:
        raise fail("$.version", f"unsupported version {policy.version}")
    if policy.alert_window_seconds <= 0 or policy.rate.bucket_seconds <= 0 or policy.distinct.window_seconds <= 0:
        raise fail("$", "window lengths must be positive")
    if not 0 < policy.rate.alpha <= 1 or not 0 < policy.sizes.alpha <= 1:
        raise fail("$", "alpha must be in (0, 1]")
    if policy.exposure.records_factor < 1 or policy.exposure.min_records < 1:
        raise fail("$.exposure", "records_factor and min_records must be at least 1")
    for name in policy.caps.__struct_fields__:
        if getattr(policy.caps, name) < 1:
            raise fail(f"$.caps.{name}", f"cap {name} must be at least 1")
    for i, feed in enumerate(policy.iplists):
        if feed.alert not in IP_ALERTS:
            raise fail(f"$.iplists[{i}].alert", f"alert must be one of {', '.join(IP_ALERTS)}")
        if feed.format not in ("plain", "tor"):
            raise fail(f"$.iplists[{i}].format", "format must be plain or tor")
    for i, pattern in enumerate(policy.useragents.patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise fail(f"$.useragents.patterns[{i}]", f"bad regex: {exc}") from None
    return msgspec.structs.replace(policy, base_dir=os.path.dirname(os.path.abspath(path)))
