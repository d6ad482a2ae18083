"""The sensor's pipeline as a mitmproxy addon.

    mitmdump -s sensor/mitm_addon.py --set apiward_collector=https://collector:8000 \\
        [--mode reverse:http://backend:9000] [--set apiward_api_name=orders] [--set apiward_window=60]

Every HTTP flow mitmproxy completes (regular or reverse proxy, TLS intercepted or not) becomes an
``Exchange`` (the same conversion ``apiward-sensor replay`` uses for flow files) and goes through the
same Pipeline -> SummaryAggregator -> Shipper chain as ``SensorRuntime``. The ingest token comes from
``APIWARD_INGEST_TOKEN`` (never an option: options show up in mitmproxy's UI and process list); every
other ``APIWARD_*`` variable applies as for the sensor, the ``apiward_*`` options win over them.

The addon never changes a flow: analysis runs after mitmproxy has the response, in the ``response``
hook, synchronously and bounded like the inline proxy's detect mode.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# mitmdump loads this file by path: make the repository importable when it is run from a checkout
# (an installed apiward wins, since it is already on sys.path before this line runs).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from apiward.tasks import stop_tasks  # noqa: E402
from sensor import __version__  # noqa: E402
from sensor.config import ConfigError, SensorConfig, load_config  # noqa: E402
from sensor.events import SensorInfo, SensorStats  # noqa: E402
from sensor.evidence import PrincipalHasher  # noqa: E402
from sensor.pipeline import Pipeline  # noqa: E402
from sensor.replay import SkipEntry, flow_exchange  # noqa: E402
from sensor.shipper import Shipper  # noqa: E402
from sensor.state import load_principal_secret, load_sensor_id  # noqa: E402
from sensor.summary import SummaryAggregator  # noqa: E402

FLUSH_INTERVAL_MAX = 1.0  # seconds between looks for closed windows (as in SensorRuntime)

# option name -> (type, default, help); each maps onto the SensorConfig field without the prefix
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "apiward_collector": (str, "", "collector base URL; empty: summaries are only logged"),
    "apiward_api_name": (str, "", "API collection name (default: the reverse-proxy upstream host or 'default')"),
    "apiward_window": (int, 60, "summary window, seconds"),
    "apiward_trusted_proxies": (str, "", "CIDR,... whose X-Forwarded-For is believed"),
    "apiward_internal_cidrs": (str, "", "CIDR,... that count as internal clients"),
    "apiward_state_dir": (str, "", "directory for the spool and generated keys"),
    "apiward_sensor_name": (str, "", "name shown in the collector"),
    "apiward_inspect_bytes": (int, 64 * 1024, "body prefix analysed, bytes"),
}


class _Parts:
    # A plain class, not a dataclass: mitmproxy executes this file without registering it in
    # sys.modules, and dataclasses look their module up there to resolve string annotations.
    __slots__ = ("aggregator", "cfg", "pipeline", "shipper")

    def __init__(self, cfg: SensorConfig, aggregator: SummaryAggregator, pipeline: Pipeline, shipper: Shipper) -> None:
        self.cfg = cfg
        self.aggregator = aggregator
        self.pipeline = pipeline
        self.shipper = shipper


def config_from_options(options: Any, environ: dict[str, str] | None = None) -> SensorConfig:
    """The SensorConfig for the current mitmproxy options (empty strings mean "not set")."""
    flags: dict[str, Any] = {}
    for name in OPTIONS:
        value = getattr(options, name, None)
        if value not in (None, ""):
            flags[name.removeprefix("apiward_")] = value
    mode = str(getattr(options, "mode", [""])[0] if getattr(options, "mode", None) else "")
    if "api_name" not in flags and mode.startswith("reverse:"):
        # In reverse-proxy mode the upstream names the API, as --upstream does for the sensor.
        flags["upstream"] = mode.removeprefix("reverse:").split("@", 1)[0]
    # "mirror" only satisfies validation: mitmproxy is the listener here, the sensor's is not used.
    flags["mode"] = "mirror"
    return load_config(flags, None, environ)


class ApiwardAddon:
    """mitmproxy addon: ``load`` declares options, ``running`` starts shipping, ``done`` flushes."""

    def __init__(self) -> None:
        self.parts: _Parts | None = None
        self.skipped = 0
        self._flush_task: asyncio.Task[None] | None = None

    # -- mitmproxy hooks ---------------------------------------------------------------------------
    def load(self, loader: Any) -> None:
        for name, (typ, default, help_text) in OPTIONS.items():
            loader.add_option(name, typ, default, help_text)

    def configure(self, updated: set[str]) -> None:
        if self.parts is not None and not updated & set(OPTIONS):
            return
        if self.parts is not None:
            # Changing the collector or the windows of a running pipeline would split windows: the
            # options are read once, at start-up.
            return
        from mitmproxy import ctx  # type: ignore[import-not-found, unused-ignore]
        from mitmproxy import exceptions as mitm_exceptions  # type: ignore[import-not-found, unused-ignore]

        try:
            cfg = config_from_options(ctx.options)
        except ConfigError as exc:
            raise mitm_exceptions.OptionsError(f"apiward: {exc}") from exc  # type: ignore[no-untyped-call, unused-ignore]
        self.parts = build_parts(cfg)

    async def running(self) -> None:
        if self.parts is None:  # pragma: no cover - configure always runs first
            return
        await self.parts.shipper.start()
        self._flush_task = asyncio.create_task(self._flush_loop(), name="apiward-summary-flush")

    def response(self, flow: Any) -> None:
        self._submit(flow)

    def error(self, flow: Any) -> None:
        # A flow that failed before a response (upstream refused, timed out): still an observation
        # of the endpoint, with status 0, like the inline proxy's 502/504 cases.
        if flow.response is None:
            self._submit(flow)

    async def done(self) -> None:
        task, self._flush_task = self._flush_task, None
        await stop_tasks([task])
        if self.parts is not None:
            self.flush(force=True)
            await self.parts.shipper.stop()

    # -- internals ---------------------------------------------------------------------------------
    def _submit(self, flow: Any) -> None:
        parts = self.parts
        if parts is None:
            return
        try:
            exchange = flow_exchange(flow, parts.cfg.inspect_bytes, source="mitmproxy")
        except SkipEntry:
            self.skipped += 1
            return
        parts.pipeline.submit(exchange)  # never raises: the pipeline counts its own failures

    def flush(self, *, force: bool = False) -> int:
        parts = self.parts
        if parts is None:
            return 0
        summaries = parts.aggregator.drain(datetime.now(UTC).timestamp(), force=force)
        if summaries:
            parts.shipper.submit(summaries)
        return len(summaries)

    async def _flush_loop(self) -> None:
        assert self.parts is not None
        interval = min(FLUSH_INTERVAL_MAX, self.parts.cfg.window / 4)
        while True:
            await asyncio.sleep(interval)
            self.flush()


def build_parts(cfg: SensorConfig) -> _Parts:
    aggregator = SummaryAggregator(cfg.window)
    pipeline = Pipeline(cfg, aggregator, PrincipalHasher(load_principal_secret(cfg)))
    info = SensorInfo(
        id=load_sensor_id(cfg),
        name=cfg.sensor_name or f"mitmproxy {socket.gethostname()}",
        version=__version__,
        mode="inline",  # mitmproxy sits in the request path
        started_at=datetime.now(UTC),
    )

    def stats() -> SensorStats:
        # exchanges and analysis errors ride in every batch, so the collector sees analysis gaps
        return SensorStats(exchanges=pipeline.counters.exchanges, analysis_errors=pipeline.counters.analysis_errors)

    shipper = Shipper(
        cfg.collector,
        cfg.ingest_token,
        info,
        spool_dir=str(Path(cfg.state_dir) / "spool"),
        spool_max_bytes=cfg.spool_max_bytes,
        queue_max_batches=cfg.queue_max_batches,
        stats=stats,
    )
    return _Parts(cfg=cfg, aggregator=aggregator, pipeline=pipeline, shipper=shipper)


addons = [ApiwardAddon()]
