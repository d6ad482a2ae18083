"""The sensor process: capture listener + pipeline + summary windows + shipper + admin endpoints.

``SensorRuntime`` owns every long-lived task and server, so start/stop order lives in one place:
listeners stop first (no new exchanges), then the last partial window is drained and shipped, then
the shipper flushes or spools what is left.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apiward.logs import get_logger
from apiward.tasks import stop_tasks
from sensor import __version__, analysis_compiled
from sensor.config import SensorConfig, parse_listen
from sensor.cpus import usable_cpus
from sensor.events import SensorInfo, SensorStats
from sensor.evidence import PrincipalHasher
from sensor.exchange import BatchingSink, Exchange
from sensor.http_common import problem_response
from sensor.mirror import MirrorCounters, start_mirror
from sensor.offload import ProxyProcess
from sensor.pipeline import Pipeline
from sensor.proxy import ProxyCounters, RequestGate, start_proxy
from sensor.shipper import Shipper
from sensor.spec_sync import SpecSync
from sensor.state import load_principal_secret, load_sensor_id
from sensor.summary import SummaryAggregator

log = get_logger("sensor.app")

FLUSH_INTERVAL_MAX = 1.0  # how often closed windows are looked for, seconds


class SensorRuntime:
    def __init__(self, cfg: SensorConfig) -> None:
        self.cfg = cfg
        self.started_at = datetime.now(UTC)
        self.info = SensorInfo(
            id=load_sensor_id(cfg),
            name=cfg.sensor_name or socket.gethostname(),
            version=__version__,
            mode=cfg.mode,
            started_at=self.started_at,
        )
        self.aggregator = SummaryAggregator(cfg.window)
        secret = load_principal_secret(cfg)
        self.pipeline = Pipeline(cfg, self.aggregator, PrincipalHasher(secret), secret=secret)
        self.proxy_counters = ProxyCounters()
        self.mirror_counters = MirrorCounters()
        self.shipper = Shipper(
            cfg.collector,
            cfg.ingest_token,
            self.info,
            spool_dir=str(Path(cfg.state_dir) / "spool"),
            spool_max_bytes=cfg.spool_max_bytes,
            queue_max_batches=cfg.queue_max_batches,
            stats=self.stats,
            backoff_max=cfg.ship_backoff_max,
        )
        # Spec templates imported at the collector reach this sensor's router (pipeline.router).
        self.spec_sync: SpecSync | None = None
        if cfg.collector and cfg.spec_sync_interval > 0:
            self.spec_sync = SpecSync(
                cfg.collector, cfg.ingest_token, self.pipeline.api, lambda: self.pipeline.router,
                interval=cfg.spec_sync_interval,
            )
        self._runners: list[web.AppRunner] = []
        self.proxy_process: ProxyProcess | None = None  # --analysis-process
        self.analysis_process = False  # whether it runs, once started (the setting may say auto)
        self._batching: BatchingSink | None = None  # in-process analysis, once per loop iteration
        self._flush_task: asyncio.Task[None] | None = None
        self.listen_port: int | None = None
        self.admin_port: int | None = None

    def stats(self) -> SensorStats:
        return SensorStats(
            exchanges=self.pipeline.counters.exchanges,
            analysis_errors=self.pipeline.counters.analysis_errors
            + self.proxy_counters.analysis_errors
            + self.mirror_counters.analysis_errors,
            dropped_batches=self.shipper.dropped_batches,
            dropped_summaries=self.shipper.dropped_summaries,
            # exchanges the proxy process dropped because analysis fell behind: requests no summary counts
            dropped_requests=self.shipper.dropped_requests + self.analysis_dropped,
            spooled_batches=self.shipper.spooled_batches,
        )

    @property
    def analysis_dropped(self) -> int:
        return self.proxy_process.dropped if self.proxy_process is not None else 0

    async def start(self) -> None:
        await self.shipper.start()
        host, port = parse_listen(self.cfg.listen)
        cpus = usable_cpus()
        self.analysis_process = self.cfg.analysis_process if self.cfg.analysis_process is not None else cpus >= 2
        if self.analysis_process:
            counters = self.proxy_counters if self.cfg.mode == "inline" else self.mirror_counters
            self.proxy_process = ProxyProcess(self.cfg, self.pipeline, counters)
            self.listen_port = await self.proxy_process.start()
        else:
            self._batching = BatchingSink(self.pipeline, asyncio.get_running_loop().call_soon)
            if self.cfg.mode == "inline":
                gate = enforce_gate(self.pipeline, self.proxy_counters, self.cfg) if self.cfg.enforce else None
                runner = await start_proxy(self.cfg, self._batching, host, port, self.proxy_counters,
                                           request_gate=gate)
            else:
                runner = await start_mirror(self.cfg, self._batching, host, port, self.mirror_counters)
            self._runners.append(runner)
            self.listen_port = _bound_port(runner)
        if self.cfg.admin_listen:
            admin_host, admin_port = parse_listen(self.cfg.admin_listen)
            admin = web.AppRunner(self._admin_app(), access_log=None)
            await admin.setup()
            await web.TCPSite(admin, admin_host, admin_port).start()
            self._runners.append(admin)
            self.admin_port = _bound_port(admin)
        self._flush_task = asyncio.create_task(self._flush_loop(), name="summary-flush")
        if self.spec_sync is not None:
            self.spec_sync.start()
        log.info(
            "sensor_started",
            mode=self.cfg.mode,
            listen=f"{host}:{self.listen_port}",
            upstream=self.cfg.upstream,
            collector=self.cfg.collector,
            window_seconds=self.cfg.window,
            analysis_process=self.analysis_process,
            analysis_process_setting="auto" if self.cfg.analysis_process is None else self.cfg.analysis_process,
            usable_cpus=cpus,
            analysis_compiled=analysis_compiled(),
            api=self.pipeline.api,
            sensor_id=self.info.id,
        )

    async def stop(self) -> None:
        if self.proxy_process is not None:
            await self.proxy_process.stop()  # every exchange it sent has been analysed after this
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._batching is not None:
            self._batching.flush()  # exchanges of the last loop iteration
        if self.spec_sync is not None:
            await self.spec_sync.stop()
        await stop_tasks([self._flush_task])
        self.flush(force=True)
        await self.shipper.stop()
        log.info("sensor_stopped", exchanges=self.pipeline.counters.exchanges)

    def flush(self, *, force: bool = False) -> int:
        now = self._now()
        summaries = self.aggregator.drain(now, force=force)
        alerts = self.pipeline.drain_alerts(now, force=force)
        self.pipeline.attach_param_sketches(summaries)  # the fleet view's distinct-value sketches
        if summaries or alerts:
            self.shipper.submit(summaries, alerts)
        return len(summaries)

    @staticmethod
    def _now() -> float:
        return datetime.now(UTC).timestamp()

    async def _flush_loop(self) -> None:
        interval = min(FLUSH_INTERVAL_MAX, self.cfg.window / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                self.flush()
            except Exception:  # never let the flush loop die: summaries would pile up silently
                log.exception("summary_flush_failed")

    # -- admin endpoints -------------------------------------------------------------------
    def _admin_app(self) -> web.Application:
        registry = CollectorRegistry()
        registry.register(_SensorMetrics(self))
        app = web.Application()

        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "version": __version__})

        async def readyz(_: web.Request) -> web.Response:
            ready = bool(self._runners) or self.proxy_process is not None
            return web.json_response({"ready": ready}, status=200 if ready else 503)

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")

        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        return app


def enforce_gate(pipeline: Pipeline, counters: ProxyCounters, cfg: SensorConfig) -> RequestGate:
    """Enforce mode: decide at request phase, before anything goes upstream.

    The verdict is synchronous and bounded (the signature engine caps items and lengths), so the
    budget cannot preempt it; what it does guarantee is that a verdict slower than the budget never
    blocks: the request passes (fail open), and a counter and a log line say so.
    """
    budget = cfg.enforce_budget_ms / 1000

    async def gate(request: web.Request | None, exchange: Exchange) -> web.StreamResponse | None:
        started = time.perf_counter()
        verdict = pipeline.request_verdict(exchange)
        exchange.request_verdict = verdict  # a capture path that gave the whole request passes it on
        elapsed = time.perf_counter() - started
        if elapsed > budget:
            counters.enforce_over_budget += 1
            log.warning("enforce_over_budget", request_id=exchange.request_id, elapsed_ms=round(elapsed * 1000, 3))
            return None
        if not verdict.blocked:
            return None
        rules = sorted({m.rule_id for m in verdict.matches})
        return problem_response(
            403,
            "Forbidden",
            "the request was blocked by attack signatures",
            exchange.request_id,
            extra={"rule_ids": rules, "anomaly_score": verdict.score},
        )

    return gate


class _SensorMetrics(Collector):
    """Exposes the runtime's plain-int counters at scrape time (no per-request metric calls)."""

    def __init__(self, runtime: SensorRuntime) -> None:
        self.runtime = runtime

    def collect(self) -> list[Metric]:
        rt = self.runtime
        counters: dict[str, tuple[str, float]] = {
            "exchanges": ("Exchanges analysed", rt.pipeline.counters.exchanges),
            "analysis_errors": ("Exchanges whose analysis failed", rt.stats().analysis_errors),
            "mirrored_requests": ("Mirrored requests received", rt.mirror_counters.mirrored_requests),
            "records_accepted": ("Exchange records accepted", rt.mirror_counters.records_accepted),
            "proxy_requests": ("Requests received by the proxy", rt.proxy_counters.requests),
            "upstream_errors": ("502 answers: upstream unreachable", rt.proxy_counters.upstream_errors_502),
            "upstream_timeouts": ("504 answers: upstream timed out", rt.proxy_counters.upstream_timeouts_504),
            "attacks": ("Requests whose signature score reached the threshold", rt.pipeline.counters.attacks),
            "blocked": ("Requests blocked in enforce mode", rt.proxy_counters.blocked),
            "behaviour_alerts": ("Behavioural alert events emitted", rt.pipeline.behaviour.counters.alerts_emitted),
            "behaviour_errors": ("Exchanges the behaviour models failed on", rt.pipeline.behaviour.counters.errors),
            "sketches_dropped": (
                "Parameter sketches not shipped to the fleet view (too many waiting)",
                rt.pipeline.behaviour.counters.sketches_dropped,
            ),
            "enforce_over_budget": ("Enforce verdicts over budget (passed)", rt.proxy_counters.enforce_over_budget),
            "client_disconnects": (
                "Clients gone before the response ended (mirror: before the request was read)",
                rt.proxy_counters.client_disconnects + rt.mirror_counters.client_disconnects,
            ),
            "fast_path_handoffs": (
                "Connections handed from the fast path to the aiohttp path (unusual requests)",
                rt.proxy_counters.fast_path_handoffs + rt.mirror_counters.fast_path_handoffs,
            ),
            "batches_shipped": ("Batches accepted by the collector", rt.shipper.shipped_batches),
            "batches_rejected": ("Batches refused by the collector (4xx)", rt.shipper.rejected_batches),
            "batches_dropped": ("Batches lost: queue and spool full", rt.shipper.dropped_batches),
            "requests_dropped": ("Requests inside dropped batches", rt.shipper.dropped_requests),
            "analysis_dropped": ("Exchanges not analysed: the analysis process fell behind", rt.analysis_dropped),
            "proxy_process_restarts": (
                "Times the proxy process died and was restarted",
                rt.proxy_process.restarts if rt.proxy_process is not None else 0,
            ),
            "ship_retries": ("Batch send retries", rt.shipper.retries),
        }
        out: list[Metric] = []
        for name, (doc, value) in counters.items():
            family = CounterMetricFamily(f"apiward_sensor_{name}", doc)
            family.add_metric([], float(value))
            out.append(family)
        spooled = GaugeMetricFamily("apiward_sensor_spooled_batches", "Batches waiting in the disk spool")
        spooled.add_metric([], float(rt.shipper.spooled_batches))
        out.append(spooled)
        split = GaugeMetricFamily(
            "apiward_sensor_analysis_process", "1: proxy and analysis run in two processes (--analysis-process)"
        )
        split.add_metric([], float(rt.analysis_process))
        out.append(split)
        compiled = GaugeMetricFamily(
            "apiward_sensor_analysis_compiled", "1: the analysis modules are mypyc-compiled (APIWARD_COMPILE=1 build)"
        )
        compiled.add_metric([], float(analysis_compiled()))
        out.append(compiled)
        return out


def _bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (the configuration may ask for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("listener has no bound socket")
