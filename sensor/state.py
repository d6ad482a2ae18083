"""What a sensor keeps in its state directory across restarts: its id and the principal-hash key.

Its own module so that every entry point (the sensor, replay, the mitmproxy add-on, the proxy
process) reads them the same way without importing the proxy and its HTTP stack.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from pathlib import Path

from sensor.config import SensorConfig


def load_principal_secret(cfg: SensorConfig) -> bytes:
    """The HMAC key for principal hashes: configured (shared by replicas), else generated once and
    kept in the state directory so hashes stay stable across restarts."""
    if cfg.principal_secret:
        return cfg.principal_secret.encode()
    path = Path(cfg.state_dir) / "principal.key"
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    os.replace(tmp, path)
    return key


def load_sensor_id(cfg: SensorConfig) -> str:
    path = Path(cfg.state_dir) / "sensor.id"
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    sensor_id = uuid.uuid4().hex
    path.write_text(sensor_id)
    return sensor_id
