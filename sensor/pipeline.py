"""The analysis chain: ``Exchange`` -> ``Observation`` -> summaries and alerts.

A pure core: every stage is a synchronous function over the exchange, fed by ONE bounded walk over
the exchange (``sensor.walk``) whose leaves serve evidence (query credentials), parameter names,
classification and signatures. The pipeline is the only ``ExchangeSink`` the capture paths know; it
never raises into them. A failing exchange is counted (``analysis_errors`` rides in every batch's
stats, so the collector sees the gap) and logged with the exception type and code location only:
exception messages can quote request data, so they stay out.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import yaml
from multidict import MultiDict

from apiward.logs import get_logger
from sensor.alerting import AlertAggregator
from sensor.behaviour import BehaviourEngine, BehaviourError
from sensor.classify import Classifier, DatatypesError
from sensor.config import ConfigError, SensorConfig
from sensor.events import MAX_SKETCHES_PER_SUMMARY, AlertEvent, EndpointSummary, ParamSketch
from sensor.evidence import (
    EvidenceConfig,
    PrincipalHasher,
    authentication,
    client_info,
    client_scheme,
    is_trusted_peer,
)
from sensor.exchange import Exchange
from sensor.observation import Observation
from sensor.routing import Router
from sensor.signatures import ScanResult, SignatureEngine, SignaturePolicyError, build_items
from sensor.summary import SummaryAggregator
from sensor.walk import Leaf, WalkStats, exchange_leaves

log = get_logger("sensor.pipeline")

MAX_PARAMS = 64  # parameter names per location kept per request
MAX_SCANNED_HEADERS = 64
MAX_COOKIES = 64
# Distinct-value sketches shipped per flush (each ~1.4 KB of base64 before gzip): ~1.4 MB at most.
MAX_SKETCHES_PER_FLUSH = 1024
MAX_SKETCH_NAME = 256  # the collector's column for parameter names


@dataclass(slots=True)
class PipelineCounters:
    exchanges: int = 0
    analysis_errors: int = 0
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    attacks: int = 0  # requests whose signature score reached the threshold


def default_api_name(cfg: SensorConfig) -> str:
    if cfg.api_name:
        return cfg.api_name
    if cfg.upstream:
        host = urlsplit(cfg.upstream).hostname
        if host:
            return host
    return "default"


def load_spec_file(path: str) -> dict[str, object]:
    """Read an OpenAPI document (JSON or YAML) for routing; a bad file fails start-up clearly."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read spec {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"spec {path} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(doc, dict) or "paths" not in doc:
        raise ConfigError(f"spec {path} is not an OpenAPI document (no 'paths')")
    return doc


def top_level_name(leaf_path: str) -> str:
    """``$.customer.email`` -> ``customer``; ``$[*].id`` -> ``[*]``; a form field name as it is."""
    if not leaf_path.startswith("$"):
        return leaf_path
    rest = leaf_path[2:] if leaf_path.startswith("$.") else leaf_path[1:]
    for i, ch in enumerate(rest):
        if ch in ".[" and i:
            return rest[:i]
    return rest


def cookie_pairs(header: str | None) -> list[tuple[str, str]]:
    if not header:
        return []
    out: list[tuple[str, str]] = []
    for part in header.split(";", MAX_COOKIES)[:MAX_COOKIES]:
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out.append((name, value))
    return out


class Pipeline:
    """Analyses exchanges in-process and feeds the summary and alert aggregators."""

    def __init__(
        self,
        cfg: SensorConfig,
        aggregator: SummaryAggregator,
        hasher: PrincipalHasher,
        *,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        self.cfg = cfg
        self.aggregator = aggregator
        self.hasher = hasher
        self.clock = clock
        self.evidence_cfg = EvidenceConfig.from_sensor_config(cfg)
        self.api = default_api_name(cfg)
        self.router = Router(self.api, max_templates=cfg.max_templates, cache_size=cfg.route_cache_size)
        for path in cfg.specs:
            self.router.load_openapi(load_spec_file(path), self.api)
        try:
            self.classifier = Classifier.from_policies(cfg.policies)
            # A policy directory overrides only the kinds it holds: signatures when it has signatures/.
            signatures_dir = cfg.policies if cfg.policies and os.path.isdir(os.path.join(cfg.policies, "signatures")) \
                else None
            self.signatures = SignatureEngine.from_policies(signatures_dir, paranoia=cfg.paranoia)
            # The principal secret keys the behaviour models' hashed evidence too, so it is stable
            # across restarts and replicas.
            self.behaviour = BehaviourEngine.from_policies(cfg.policies, clock=clock, secret=secret)
        except (DatatypesError, SignaturePolicyError, BehaviourError) as exc:  # bad policy: file:line
            raise ConfigError(str(exc)) from exc
        self.alerts = AlertAggregator(cfg.window)
        self.counters = PipelineCounters()
        self.debug = cfg.log_level == "debug"  # per-request log lines only then (they cost even when filtered)

    # -- the stages ------------------------------------------------------------------------------
    def request_verdict(self, ex: Exchange, leaves: Sequence[Leaf] | None = None) -> ScanResult:
        """Signature verdict on the request side of an exchange (also the enforce-mode gate)."""
        if leaves is None:
            leaves = exchange_leaves(ex, self.classifier.limits, WalkStats())
        query = [(leaf.path, leaf.value) for leaf in leaves if leaf.location == "query"]
        body = [(leaf.path, leaf.value) for leaf in leaves if leaf.location == "request_body"]
        headers = list(ex.request_headers.items())[:MAX_SCANNED_HEADERS]
        cookies = cookie_pairs(ex.request_headers.get("Cookie"))
        return self.signatures.scan(build_items(ex.path, query, headers, cookies, body))

    def analyse(self, ex: Exchange) -> tuple[Observation, ScanResult]:
        observation, verdict, _ = self._analyse(ex)
        return observation, verdict

    def _analyse(self, ex: Exchange) -> tuple[Observation, ScanResult, list[Leaf]]:
        headers = ex.request_headers
        walk = WalkStats()
        leaves = exchange_leaves(ex, self.classifier.limits, walk)
        query: MultiDict[str] = MultiDict((leaf.path, leaf.value) for leaf in leaves if leaf.location == "query")
        peer_trusted = is_trusted_peer(ex.peer_ip, self.evidence_cfg)
        now = ex.started_at or self.clock()
        auth = authentication(
            headers,
            query,
            self.evidence_cfg,
            self.hasher,
            now=now,
            peer_cert_subject=ex.peer_cert_subject,
            peer_trusted=peer_trusted,
        )
        client = client_info(ex.peer_ip, headers, self.evidence_cfg, ex.client_ip_hint)
        scheme = client_scheme(ex.listener_scheme, headers, peer_trusted)
        route = self.router.route(ex.method, ex.path)
        params = [("query", name) for name in dict.fromkeys(query.keys())][:MAX_PARAMS]
        body_names = dict.fromkeys(top_level_name(leaf.path) for leaf in leaves if leaf.location == "request_body")
        params.extend(("body", name) for name in list(body_names)[:MAX_PARAMS])
        status_class = f"{ex.status // 100}xx" if ex.status else ""
        data_types = tuple(self.classifier.classify_leaves(leaves, status_class=status_class)) if leaves else ()
        gate_verdict = ex.request_verdict  # enforce mode: the same request, already scanned
        verdict = gate_verdict if isinstance(gate_verdict, ScanResult) else self.request_verdict(ex, leaves)
        observation = Observation(
            route=route,
            method=ex.method,
            status=ex.status,
            auth=auth,
            client=client,
            scheme=scheme,
            timestamp=now,
            request_size=ex.request_body_size,
            response_size=ex.response_body_size,
            latency_ms=ex.duration_ms,
            params=tuple(params),
            data_types=data_types,
            request_id=ex.request_id,
            records=walk.records,
            records_path=walk.records_path,
            records_partial=walk.records_partial,
        )
        return observation, verdict, leaves

    def submit(self, exchange: Exchange) -> None:
        self.counters.exchanges += 1
        try:
            observation, verdict, leaves = self._analyse(exchange)
            self.aggregator.add(observation)
            self.behaviour.observe(observation, exchange, leaves)
            if verdict.blocked:  # the score reached the paranoia level's threshold: an attack
                self.counters.attacks += 1
                self.alerts.add_signature_verdict(
                    observation, verdict, blocked=exchange.upstream_error == "blocked"
                )
        except Exception as exc:  # one bad exchange must never break capture
            self.counters.analysis_errors += 1
            stage = type(exc).__name__
            self.counters.errors_by_stage[stage] = self.counters.errors_by_stage.get(stage, 0) + 1
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            log.warning(
                "analysis_failed",
                request_id=exchange.request_id,
                error=stage,
                at=f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else None,
            )
            return
        if not self.debug:
            return
        log.debug(
            "request_analysed",
            request_id=exchange.request_id,
            endpoint=f"{observation.method} {observation.route.template}",
            status=observation.status,
            auth=",".join(observation.auth.schemes),
            attack_score=verdict.score,
        )

    def drain_alerts(self, now: float, *, force: bool = False) -> list[AlertEvent]:
        """Signature alerts of closed windows, and the behavioural alerts due now."""
        return self.alerts.drain(now, force=force) + self.behaviour.drain(now, force=force)

    def attach_param_sketches(self, summaries: Sequence[EndpointSummary]) -> int:
        """Put the behaviour engine's distinct-value sketches (changed since the last call) on the
        summaries of their endpoints, the latest window of each, for the collector's fleet view.
        Call after ``drain_alerts`` (the drain rolls and marks the sketches). At most
        ``MAX_SKETCHES_PER_SUMMARY`` per summary and ``MAX_SKETCHES_PER_FLUSH`` in all; the rest, and
        sketches of endpoints without a summary here, wait for the next flush. Returns how many."""
        if not summaries:
            return 0
        latest = {(s.api, s.method, s.path): s for s in summaries}  # summaries come ordered by window
        engine = self.behaviour
        window = engine.policy.distinct.window_seconds
        hash_id = engine.hasher.shared_id
        n = 0
        for key, (location, name), start, registers in engine.take_param_sketches(
            latest, MAX_SKETCHES_PER_SUMMARY, MAX_SKETCHES_PER_FLUSH
        ):
            if len(name) > MAX_SKETCH_NAME:
                continue
            latest[key].param_sketches.append(
                ParamSketch(
                    location=location, name=name, window_start=datetime.fromtimestamp(start, UTC),
                    window_seconds=window, registers=registers, hash_id=hash_id,
                )
            )
            n += 1
        return n
