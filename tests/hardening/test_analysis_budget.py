"""Analysis over its time budget: requests pass (fail open), failures are counted and logged.

The pipeline has no per-exchange time budget yet (see the report of issue 10): analysis runs
synchronously on the event loop after the answer was written. What exists is tested here:

"Nothing lost": with a slow sink every request is still answered 200, and the client has its full
answer *before* analysis of that exchange starts (detect mode never waits on analysis). With a
failing analysis stage the requests pass, ``analysis_errors`` counts each failure and the log names
the stage without request data. "Clear error": the count rides in the sensor stats.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
import structlog
from multidict import CIMultiDict, CIMultiDictProxy

from sensor.config import SensorConfig
from sensor.evidence import PrincipalHasher
from sensor.exchange import Exchange, ExchangeSink
from sensor.pipeline import Pipeline
from sensor.summary import SummaryAggregator
from tests.sensor.proxy_helpers import Upstream, running_proxy

SLOW = 0.3  # seconds one analysis takes in the slow sink


class SlowSink(ExchangeSink):
    def __init__(self) -> None:
        self.started: list[float] = []

    def submit(self, exchange: Exchange) -> None:
        self.started.append(time.monotonic())
        time.sleep(SLOW)  # a stuck analysis stage (blocks the loop, as a real one would)


def _blocking_get(port: int, path: str) -> tuple[bytes, float]:
    """A whole HTTP exchange on a plain socket in a worker thread (the proxy's loop may be blocked)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        fields = (line.partition(b":") for line in head.split(b"\r\n"))
        length = int(next(v for k, _, v in fields if k.lower() == b"content-length"))
        while len(body) < length:
            body += sock.recv(65536)
        return head, time.monotonic()  # the whole answer is here (the close comes later)


async def test_slow_analysis_never_delays_the_answer_it_analyses() -> None:
    """Each client has its whole answer (status, headers, full body) before its own exchange is analysed."""
    upstream = await Upstream().start()
    sink = SlowSink()
    try:
        async with running_proxy(SensorConfig(upstream=upstream.url), sink) as (port, counters):
            answered: list[float] = []
            for i in range(3):
                data, at = await asyncio.to_thread(_blocking_get, port, f"/x/{i}")
                assert data.startswith(b"HTTP/1.1 200")
                answered.append(at)
            await asyncio.sleep(SLOW)
    finally:
        await upstream.stop()
    assert len(sink.started) == 3
    for got, analysed in zip(answered, sink.started, strict=True):
        assert got <= analysed + SLOW / 3  # the answer was complete when (or right after) analysis started
    assert counters.analysis_errors == 0


@pytest.mark.replaces_methods
@pytest.mark.parametrize("stage", ["route", "aggregate"])
def test_failing_analysis_stage_fails_open_counted_and_logged(stage: str, tmp_path: Path) -> None:
    """A stage that raises: submit() never raises, each failure is counted by type, the log line names
    the exception type and code location only."""
    cfg = SensorConfig(upstream="http://127.0.0.1:1", api_name="budget", state_dir=str(tmp_path))
    pipeline = Pipeline(cfg, SummaryAggregator(60), PrincipalHasher(b"k" * 32))

    def boom(*args: object, **kwargs: object) -> None:
        raise TimeoutError("analysis budget exceeded: secret-request-data")

    if stage == "route":
        pipeline.router.route = boom  # type: ignore[method-assign]
    else:
        pipeline.aggregator.add = boom  # type: ignore[method-assign]
    headers = CIMultiDictProxy(CIMultiDict({"Accept": "*/*"}))
    ex = Exchange(request_id="rid-1", method="GET", path="/a", query_string="", request_headers=headers,
                  peer_ip="1.2.3.4")
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            pipeline.submit(ex)
    assert pipeline.counters.exchanges == 5 and pipeline.counters.analysis_errors == 5
    assert pipeline.counters.errors_by_stage == {"TimeoutError": 5}
    failures = [entry for entry in logs if entry["event"] == "analysis_failed"]
    assert len(failures) == 5 and failures[0]["request_id"] == "rid-1"
    assert "secret-request-data" not in repr(failures)
