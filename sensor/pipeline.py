"""The analysis chain: ``Exchange`` -> ``Observation`` -> summaries (and, later, alerts).

A pure core: every stage is a synchronous function over the exchange. The pipeline is the only
``ExchangeSink`` the capture paths know; it never raises into them. A failing exchange is counted
(``analysis_errors`` rides in every batch's stats, so the collector sees the gap) and logged with the
exception type and code location only: exception messages can quote request data, so they stay out.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import yaml
from multidict import MultiDict

from apiward.logs import get_logger
from sensor.classify import Classifier, DatatypesError
from sensor.config import ConfigError, SensorConfig
from sensor.evidence import (
    EvidenceConfig,
    PrincipalHasher,
    authentication,
    client_info,
    client_scheme,
    is_trusted_peer,
)
from sensor.exchange import Exchange, ExchangeSink
from sensor.observation import Observation
from sensor.payload import body_param_names
from sensor.routing import Router
from sensor.summary import SummaryAggregator

log = get_logger("sensor.pipeline")

MAX_QUERY_PARAMS = 64


@dataclass(slots=True)
class PipelineCounters:
    exchanges: int = 0
    analysis_errors: int = 0
    errors_by_stage: dict[str, int] = field(default_factory=dict)


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


class Pipeline(ExchangeSink):
    """Analyses exchanges in-process and feeds the summary aggregator."""

    def __init__(
        self,
        cfg: SensorConfig,
        aggregator: SummaryAggregator,
        hasher: PrincipalHasher,
        *,
        clock: Callable[[], float] = time.time,
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
        except DatatypesError as exc:  # a bad policy file stops start-up with its file and line
            raise ConfigError(str(exc)) from exc
        self.counters = PipelineCounters()

    def analyse(self, ex: Exchange) -> Observation:
        headers = ex.request_headers
        query: MultiDict[str] = MultiDict(
            parse_qsl(ex.query_string, keep_blank_values=True, max_num_fields=None)[:MAX_QUERY_PARAMS]
            if ex.query_string
            else ()
        )
        peer_trusted = is_trusted_peer(ex.peer_ip, self.evidence_cfg)
        auth = authentication(
            headers,
            query,
            self.evidence_cfg,
            self.hasher,
            now=ex.started_at or self.clock(),
            peer_cert_subject=ex.peer_cert_subject,
            peer_trusted=peer_trusted,
        )
        client = client_info(ex.peer_ip, headers, self.evidence_cfg, ex.client_ip_hint)
        scheme = client_scheme(ex.listener_scheme, headers, peer_trusted)
        route = self.router.route(ex.method, ex.path)
        params: list[tuple[str, str]] = [("query", name) for name in dict.fromkeys(query.keys())]
        body_names = body_param_names(
            headers.get("Content-Type"),
            ex.request_body,
            complete=len(ex.request_body) >= ex.request_body_size,
        )
        params.extend(("body", name) for name in body_names)
        data_types = self.classifier.classify_exchange(ex).data_types
        return Observation(
            route=route,
            method=ex.method,
            status=ex.status,
            auth=auth,
            client=client,
            scheme=scheme,
            timestamp=ex.started_at or self.clock(),
            request_size=ex.request_body_size,
            response_size=ex.response_body_size,
            latency_ms=ex.duration_ms,
            params=tuple(params),
            data_types=data_types,
            request_id=ex.request_id,
        )

    def submit(self, exchange: Exchange) -> None:
        self.counters.exchanges += 1
        try:
            observation = self.analyse(exchange)
            self.aggregator.add(observation)
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
        log.debug(
            "request_analysed",
            request_id=exchange.request_id,
            endpoint=f"{observation.method} {observation.route.template}",
            status=observation.status,
            auth=",".join(observation.auth.schemes),
        )
