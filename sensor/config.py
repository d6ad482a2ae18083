"""Sensor configuration: flags, then a YAML file (``--config``), then ``APIWARD_*`` variables.

Precedence is flags > file > environment > defaults. Every value is validated here so that a bad
configuration fails start-up with one clear line, never later in the request path.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is missing or invalid (message is shown to the operator as is)."""


@dataclass(slots=True)
class SensorConfig:
    upstream: str | None = None  # inline mode: the backend base URL
    listen: str = "127.0.0.1:8080"
    collector: str | None = None  # collector base URL; None -> summaries are logged, not shipped
    ingest_token: str | None = None
    mode: str = "inline"  # "inline" | "mirror"
    enforce: bool = False
    paranoia: int = 2  # signature paranoia level 1-4: more rules and a lower threshold as it rises
    enforce_budget_ms: float = 5.0  # enforce mode: a verdict slower than this lets the request pass
    policies: str | None = None
    window: float = 60.0  # summary window, seconds
    trusted_proxies: list[str] = field(default_factory=list)  # CIDRs whose X-Forwarded-For is believed
    internal_cidrs: list[str] = field(default_factory=list)  # extra ranges that count as internal
    api_name: str | None = None  # the API collection name; default: the upstream's host
    specs: list[str] = field(default_factory=list)  # OpenAPI files used for routing
    inspect_bytes: int = 64 * 1024  # body prefix kept for analysis, per direction
    max_body_bytes: int | None = None  # request bodies above this are refused with 413
    api_key_headers: list[str] = field(default_factory=lambda: ["x-api-key", "api-key", "apikey"])
    api_key_query: list[str] = field(default_factory=lambda: ["api_key", "api-key", "apikey", "key"])
    session_cookies: list[str] = field(
        default_factory=lambda: ["session", "sessionid", "JSESSIONID", "PHPSESSID", "connect.sid", "sid"]
    )
    principal_secret: str | None = None  # HMAC key for principal hashes; generated when absent
    sensor_name: str | None = None
    state_dir: str = ".apiward-sensor"  # spool and generated secret live here
    spool_max_bytes: int = 256 * 1024 * 1024
    queue_max_batches: int = 64
    connect_timeout: float = 5.0
    read_timeout: float = 60.0  # upstream: max silence while reading a response
    pool_size: int = 256  # upstream connections
    keepalive_timeout: float = 75.0  # client side idle keep-alive
    client_body_timeout: float = 60.0  # max silence while reading a client body
    max_header_bytes: int = 16 * 1024
    route_cache_size: int = 65536
    max_templates: int = 10000
    log_level: str = "info"
    admin_listen: str | None = None  # HOST:PORT for /healthz, /readyz, /metrics; None -> off
    ship_backoff_max: float = 30.0  # longest wait between retries while the collector is away
    # capture layer (sensor/proxy.py, sensor/mirror.py)
    upstream_keepalive_timeout: float = 4.0  # idle pooled upstream connection; below Node's 5 s default
    tls_cert: str | None = None  # PEM certificate: the proxy listener speaks TLS when set
    tls_key: str | None = None  # PEM private key for tls_cert (None: the key is in tls_cert)
    tls_client_ca: str | None = None  # CA bundle: client certificates are verified when presented
    record_max_bytes: int = 8 * 1024 * 1024  # one POST of exchange records (mirror listener)
    record_max_batch: int = 100  # records in one JSON array
    # spec templates pulled from the collector (sensor/spec_sync.py); 0 turns the pull off
    spec_sync_interval: float = 60.0
    # capture (proxy or mirror listener) in a child process, analysis in this one (sensor/offload.py).
    # None = auto: on when this process may use two CPUs or more (sensor/cpus.py). Embedded runtimes
    # (tests, ``apiward demo``) default to one process; ``load_config`` (the operator's
    # ``apiward-sensor``) defaults to auto.
    analysis_process: bool | None = False
    # plain API requests proxied at the protocol level, the rest by aiohttp (sensor/fastpath.py)
    fast_path: bool = True

    def validate(self) -> SensorConfig:
        if self.mode not in ("inline", "mirror"):
            raise ConfigError(f"mode must be 'inline' or 'mirror', not {self.mode!r}")
        if self.mode == "inline" and not self.upstream:
            raise ConfigError("inline mode needs --upstream URL")
        if self.upstream and not self.upstream.startswith(("http://", "https://")):
            raise ConfigError(f"--upstream must be an http(s) URL, not {self.upstream!r}")
        if self.collector and not self.collector.startswith(("http://", "https://")):
            raise ConfigError(f"--collector must be an http(s) URL, not {self.collector!r}")
        parse_listen(self.listen)
        if self.admin_listen:
            parse_listen(self.admin_listen)
        if not 1 <= self.window <= 3600:
            raise ConfigError(f"--window must be between 1 and 3600 seconds, not {self.window}")
        for cidr in [*self.trusted_proxies, *self.internal_cidrs]:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ConfigError(f"not a CIDR: {cidr!r}") from exc
        if self.inspect_bytes < 0 or self.inspect_bytes > 16 * 1024 * 1024:
            raise ConfigError("inspect_bytes must be between 0 and 16 MiB")
        if self.paranoia not in (1, 2, 3, 4):
            raise ConfigError(f"--paranoia must be 1, 2, 3 or 4, not {self.paranoia}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log level must be debug|info|warning|error, not {self.log_level!r}")
        return self


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address must be HOST:PORT, not {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


_LIST_FIELDS = {f.name for f in fields(SensorConfig) if f.type in ("list[str]",)}


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name in _LIST_FIELDS:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return [str(v) for v in value]
        raise ConfigError(f"{name} must be a list or a comma-separated string")
    if name == "analysis_process":
        if value is None or isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return None
        if text in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return text in ("1", "true", "yes", "on")
        raise ConfigError(f"analysis_process must be auto, true or false, not {value!r}")
    if isinstance(current, bool) or name == "enforce":
        if isinstance(value, bool):
            return value
        return str(value).lower() in ("1", "true", "yes", "on")
    if (isinstance(current, int) and not isinstance(current, bool)) or name == "max_body_bytes":
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be an integer, not {value!r}") from exc
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be a number, not {value!r}") from exc
    return str(value)


def load_config(
    flags: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SensorConfig:
    """Merge defaults < environment < file < flags into a validated ``SensorConfig``."""
    environ = os.environ if environ is None else environ
    cfg = SensorConfig(analysis_process=None)  # an operator's sensor uses a second CPU when it has one
    names = {f.name for f in fields(SensorConfig)}
    layers: list[dict[str, Any]] = []
    env_layer: dict[str, Any] = {}
    for name in names:
        key = "APIWARD_" + name.upper()
        if key in environ:
            env_layer[name] = environ[key]
    layers.append(env_layer)
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {config_file} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {config_file} must hold a mapping")
        normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(normalised) - names)
        if unknown:
            raise ConfigError(f"config file {config_file}: unknown setting(s) {', '.join(unknown)}")
        layers.append(normalised)
    layers.append({k: v for k, v in flags.items() if v is not None and k in names})
    for layer in layers:
        for name, value in layer.items():
            setattr(cfg, name, _coerce(name, value, getattr(cfg, name)))
    return cfg.validate()
