"""Collector settings: listen address, database, tokens per role, body limits.

Every value is validated here so that a bad configuration stops start-up with one clear line
(``ConfigError``), never later in a request.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from collector import suppressions as supp
from collector.export.config import ExportConfig
from collector.export.config import load as load_exporters
from collector.yamlnodes import YamlFileError
from sensor.behaviour.policy import BehaviourError, load_behaviour_policy

MIN_TOKEN_LENGTH = 16
TOKEN_ENV = {
    "ingest": "APIWARD_INGEST_TOKENS",
    "read": "APIWARD_READ_TOKENS",
    "admin": "APIWARD_ADMIN_TOKENS",
}


class ConfigError(ValueError):
    """A configuration value is missing or invalid (the message is shown to the operator as is)."""


class Role(StrEnum):
    INGEST = "ingest"  # sensors: POST events only
    READ = "read"  # dashboard and API consumers: GET
    ADMIN = "admin"  # implies read; alert status, spec import

    def grants(self, needed: Role) -> bool:
        if self is needed:
            return True
        return self is Role.ADMIN and needed is Role.READ


@dataclass(frozen=True, slots=True)
class Token:
    role: Role
    secret: str = field(repr=False)  # never printed, never logged
    name: str  # who: shown in alert status changes and logs

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.secret.encode()).digest()


@dataclass(slots=True)
class CollectorSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = "sqlite:///apiward.db"
    tokens: list[Token] = field(default_factory=list)
    insecure_dev: bool = False  # no tokens, everything open; loopback only
    max_body_bytes: int = 8 * 1024 * 1024  # compressed (wire) size of one batch
    max_decompressed_bytes: int = 64 * 1024 * 1024  # after gzip: bounds decompression bombs
    log_level: str = "info"
    max_spec_bytes: int = 32 * 1024 * 1024  # one imported OpenAPI document (Stripe's is 4 MB of YAML)
    retention_days: int = 14  # per-window rows older than this are rolled into hourly rows
    sweep_seconds: float = 300.0  # periodic posture pass (time-based findings, reset, retention); 0 = off
    recommendations_file: str | None = None  # default: policies/recommendations.yaml
    # Alerts and export (collector.store.alert_store, collector.export).
    alert_group_window: float = 86400.0  # seconds of quiet after which a group's next occurrence is a new alert
    suppressions: supp.Suppressions = field(default_factory=supp.Suppressions)
    exporters: ExportConfig = field(default_factory=ExportConfig)
    recommendation_check_seconds: float = 60.0  # how often "recommendation became unhealthy" is checked
    # Fleet view (collector.fleet_jobs): how often, and the behaviour policy its thresholds come from
    # (the sensors' behaviour.yaml; None = the bundled policies/behaviour.yaml).
    fleet_seconds: float = 60.0  # 0 = off
    behaviour_policy_file: str | None = None

    def validate(self) -> CollectorSettings:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, not {self.port}")
        database_driver_url(self.database_url)
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log level must be debug|info|warning|error, not {self.log_level!r}")
        if not 1024 <= self.max_body_bytes <= 1024 * 1024 * 1024:
            raise ConfigError("max_body_bytes must be between 1 KiB and 1 GiB")
        if self.max_decompressed_bytes < self.max_body_bytes:
            raise ConfigError("max_decompressed_bytes must be at least max_body_bytes")
        if not 1 <= self.retention_days <= 3650:
            raise ConfigError(f"retention days must be between 1 and 3650, not {self.retention_days}")
        if not 1 <= self.alert_group_window <= 90 * 86400:
            raise ConfigError("the alert grouping window must be between 1 second and 90 days")
        if self.sweep_seconds < 0:
            raise ConfigError("the posture sweep interval must not be negative")
        if not math.isfinite(self.fleet_seconds) or self.fleet_seconds < 0:
            raise ConfigError("the fleet view interval must be a number of seconds, 0 or more")
        if self.behaviour_policy_file is not None:
            try:
                load_behaviour_policy(self.behaviour_policy_file)
            except (BehaviourError, OSError) as exc:
                raise ConfigError(f"behaviour policy: {exc}") from None
        seen: dict[bytes, Role] = {}
        for token in self.tokens:
            other = seen.setdefault(token.digest, token.role)
            if other is not token.role:
                raise ConfigError(f"the same token is configured for roles {other.value} and {token.role.value}")
        if self.insecure_dev:
            if not is_loopback(self.host):
                raise ConfigError(f"--insecure-dev is only allowed on a loopback address, not {self.host!r}")
        elif not self.tokens:
            raise ConfigError(
                "no tokens configured: set APIWARD_INGEST_TOKENS / APIWARD_READ_TOKENS / "
                "APIWARD_ADMIN_TOKENS or --tokens-file (or --insecure-dev on 127.0.0.1)"
            )
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address must be HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def database_driver_url(url: str) -> str:
    """The SQLAlchemy async driver URL for a user-facing database URL."""
    for prefix in ("postgresql+asyncpg://", "sqlite+aiosqlite://"):
        if url.startswith(prefix):
            return url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    raise ConfigError(f"database URL must start with sqlite:// or postgresql://, not {_redact_url(url)!r}")


def _redact_url(url: str) -> str:
    # A database URL may carry a password; show the scheme and host only.
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url[:40]
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _token(role: Role, secret: Any, name: Any, where: str) -> Token:
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigError(f"{where}: a {role.value} token must be a non-empty string")
    secret = secret.strip()
    if any(ch.isspace() for ch in secret) or len(secret) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{where}: {role.value} tokens must be at least {MIN_TOKEN_LENGTH} characters without spaces"
        )
    if name is None:
        # A stable label that is not the secret: role plus a short digest prefix.
        name = f"{role.value}-{hashlib.sha256(secret.encode()).hexdigest()[:8]}"
    return Token(role=role, secret=secret, name=str(name))


def tokens_from_env(environ: Mapping[str, str]) -> list[Token]:
    tokens: list[Token] = []
    for role_name, key in TOKEN_ENV.items():
        for part in environ.get(key, "").split(","):
            if part.strip():
                tokens.append(_token(Role(role_name), part, None, key))
    return tokens


def tokens_from_file(path: str) -> list[Token]:
    """Read ``{ingest: [...], read: [...], admin: [...]}``; entries are strings or ``{name, token}``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read tokens file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"tokens file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"tokens file {path} must hold a mapping of role -> list of tokens")
    unknown = sorted(str(k) for k in data if k not in TOKEN_ENV)
    if unknown:
        raise ConfigError(f"tokens file {path}: unknown role(s) {', '.join(unknown)} (ingest, read, admin)")
    tokens: list[Token] = []
    for role_name, entries in data.items():
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ConfigError(f"tokens file {path}: {role_name} must be a list")
        for entry in entries:
            if isinstance(entry, dict):
                tokens.append(_token(Role(role_name), entry.get("token"), entry.get("name"), path))
            else:
                tokens.append(_token(Role(role_name), entry, None, path))
    return tokens


def load_settings(
    *,
    listen: str | None = None,
    database: str | None = None,
    tokens_file: str | None = None,
    insecure_dev: bool = False,
    log_level: str | None = None,
    environ: Mapping[str, str] | None = None,
    retention_days: int | None = None,
    exporters_file: str | None = None,
    suppressions_file: str | None = None,
    alert_group_window: float | None = None,
    fleet_seconds: float | None = None,
    behaviour_policy_file: str | None = None,
) -> CollectorSettings:
    """Build validated settings from flags and ``APIWARD_*`` variables (flags win)."""
    environ = os.environ if environ is None else environ
    settings = CollectorSettings()
    listen = listen or environ.get("APIWARD_LISTEN")
    if listen:
        settings.host, settings.port = parse_listen(listen)
    settings.database_url = database or environ.get("APIWARD_DATABASE") or settings.database_url
    settings.log_level = log_level or environ.get("APIWARD_LOG_LEVEL") or settings.log_level
    settings.insecure_dev = insecure_dev
    retention = retention_days if retention_days is not None else environ.get("APIWARD_RETENTION_DAYS")
    if retention is not None:
        try:
            settings.retention_days = int(retention)
        except ValueError as exc:
            raise ConfigError(f"retention days must be an integer, not {retention!r}") from exc
    window = alert_group_window if alert_group_window is not None else environ.get("APIWARD_ALERT_GROUP_WINDOW")
    if window is not None:
        try:
            settings.alert_group_window = float(window)
        except ValueError as exc:
            raise ConfigError(f"the alert grouping window must be a number of seconds, not {window!r}") from exc
    fleet = fleet_seconds if fleet_seconds is not None else environ.get("APIWARD_FLEET_SECONDS")
    if fleet is not None:
        try:
            settings.fleet_seconds = float(fleet)
        except ValueError as exc:
            raise ConfigError(f"the fleet view interval must be a number of seconds, not {fleet!r}") from exc
    settings.behaviour_policy_file = behaviour_policy_file or environ.get("APIWARD_BEHAVIOUR_POLICY") or None
    _load_alert_files(settings, exporters_file, suppressions_file, environ)
    settings.tokens = tokens_from_env(environ)
    tokens_file = tokens_file or environ.get("APIWARD_TOKENS_FILE")
    if tokens_file:
        settings.tokens += tokens_from_file(tokens_file)
    return settings.validate()


def _load_alert_files(
    settings: CollectorSettings, exporters_file: str | None, suppressions_file: str | None,
    environ: Mapping[str, str],
) -> None:
    """Exporters and suppression rules; a bad file stops start-up with its file and line."""
    exporters_file = exporters_file or environ.get("APIWARD_EXPORTERS_FILE")
    suppressions_file = suppressions_file or environ.get("APIWARD_SUPPRESSIONS_FILE")
    try:
        if exporters_file:
            settings.exporters = load_exporters(exporters_file, environ)
        if suppressions_file:
            settings.suppressions = supp.load(suppressions_file)
        elif supp.DEFAULT_PATH.exists():
            settings.suppressions = supp.load(supp.DEFAULT_PATH)
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from None
