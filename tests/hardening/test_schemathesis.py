"""Schemathesis against the collector's own OpenAPI document: no server errors, responses as documented.

A real collector (``create_app`` with ingest/read/admin tokens, SQLite in a temporary directory) runs
on 127.0.0.1 in a thread with its own event loop (Schemathesis calls it with blocking ``requests``). It
is seeded with batches (endpoints, alerts, a sensor) so the GET operations return data, then every
operation of ``/openapi.json`` - loaded over HTTP from the collector itself - is exercised with
positive and negative data, each with a token of the role the operation needs.

"No server errors": the ``not_a_server_error`` check on every response, and the collector's own request
metrics read back at the end show zero 5xx. "As documented": ``response_schema_conformance`` validates
every documented response body against its schema. Bounded: a few examples per operation, well under
90 s in all. The rate limiter is switched off for the run (``APIWARD_RATE_LIMIT_*=0``): 429s would only
hide the handlers from the fuzzer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.result import Ok

from collector.app import ROUTES, create_app
from collector.settings import CollectorSettings, Role, Token
from sensor.events import encode_batch
from tests.collector import factories
from tests.e2e.conftest import serve

INGEST, READ, ADMIN = "st-ingest-token-0123456789", "st-read-token-0123456789ab", "st-admin-token-0123456789a"
TOKEN_FOR = {Role.INGEST: INGEST, Role.READ: READ, Role.ADMIN: ADMIN}
MAX_EXAMPLES = 50  # per operation and generation mode: about 2,000 requests, 20-30 s for the whole run


def _role_of(method: str, path: str) -> Role | None:
    """The role the collector's route table requires for (method, path); the first of several will do."""
    for m, p, _, role in ROUTES:
        if m == method.upper() and p == path:
            return role[0] if isinstance(role, tuple) else role
    return None


class ThreadedCollector:
    """The collector app served by aiohttp in a thread of its own, so blocking clients can call it."""

    def __init__(self, db: Path) -> None:
        self.settings = CollectorSettings(
            host="127.0.0.1",
            database_url=f"sqlite:///{db}",
            tokens=[Token(Role.INGEST, INGEST, "st-ingest"), Token(Role.READ, READ, "st-read"),
                    Token(Role.ADMIN, ADMIN, "st-admin")],
            log_level="warning",
            sweep_seconds=0,
        ).validate()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="collector", daemon=True)
        self.runner: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedCollector:
        self.thread.start()
        self.runner, self.port = asyncio.run_coroutine_threadsafe(
            serve(create_app(self.settings)), self.loop
        ).result(30)
        return self

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _request(url: str, token: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {token}"})
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def _seed(url: str) -> None:
    """Two sensors' batches: endpoints on two APIs, parameters and alerts, so list and detail GETs have data."""
    batches = [
        factories.batch(
            [factories.summary("/users/{id}"), factories.summary("/users", method="POST", requests=3)],
            [factories.alert("SIG_SQLI"), factories.alert("AUTH_BRUTE_FORCE", path="/login", count=40)],
            sensor_id="st-sensor-1",
        ),
        factories.batch(
            [factories.summary("/orders/{id}", api="billing"), factories.summary("/health", requests=1)],
            [factories.alert("SIG_XSS", path="/orders/{id}", severity="medium")],
            sensor_id="st-sensor-2",
        ),
    ]
    for batch in batches:
        status, _ = _request(url + "/api/v1/events", INGEST, encode_batch(batch))
        assert status == 200


def _server_errors(url: str) -> int:
    _, text = _request(url + "/metrics", READ)
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.decode().splitlines()
        if line.startswith("apiward_collector_http_requests_total{") and 'status="5' in line
    )


@pytest.fixture
def running_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("TOKEN_RPS", "TOKEN_BURST", "IP_RPS", "IP_BURST"):
        monkeypatch.setenv(f"APIWARD_RATE_LIMIT_{name}", "0")  # read by create_app: no limit
    collector = ThreadedCollector(tmp_path / "collector.db")
    try:
        collector.start()
        _seed(collector.url)
        _, body = _request(collector.url + "/api/v1/alerts", READ)
        assert json.loads(body)["items"], "seeding stored no alerts"
        yield collector.url
    finally:
        collector.stop()


def _exercise(operation: Any, mode: GenerationMode, base_url: str) -> list[str]:
    """Up to MAX_EXAMPLES cases of one operation in one mode; the first failures."""
    role = _role_of(operation.method, operation.path)
    headers = {"Authorization": f"Bearer {TOKEN_FOR[role]}"} if role is not None else {}
    failures: list[str] = []

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,  # no .hypothesis/ directory in the repository
        derandomize=True,  # the same cases in every run: a new finding is a new code path, not luck
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the run stays bounded, curl shows the case
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        try:
            case.call_and_validate(
                base_url=base_url, headers=headers, checks=[not_a_server_error, response_schema_conformance],
                timeout=10,
            )
        except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
            if len(failures) < 3:  # the message names the check, the response and a curl line to replay it
                failures.append(f"{operation.label} [{mode.value}]: {exc}")

    try:
        run()
    except Unsatisfiable:  # negative mode on an operation without parameters or body: nothing to negate
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


@pytest.mark.timeout(120)
def test_collector_openapi_no_server_errors(running_collector: str) -> None:
    """Every operation of the served document, positive and negative data: no 5xx, bodies as documented."""
    schema = schemathesis.openapi.from_url(running_collector + "/openapi.json")
    failures: list[str] = []
    tested: set[tuple[str, str]] = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the served document has an invalid operation: {result.err()}"
        operation = result.ok()
        tested.add((operation.method.upper(), operation.path))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _exercise(operation, mode, running_collector)
    # Every route is documented and was exercised (Schemathesis leaves out the document it was loaded from).
    assert tested == {(m, p) for m, p, _, _ in ROUTES} - {("GET", "/openapi.json")}
    assert not failures, "\n".join(failures)
    assert _server_errors(running_collector) == 0, "the collector counted 5xx answers"
