"""Request-id accounting: the collector is SIGKILLed and restarted under sustained traffic; every request
the backend served is counted exactly once.

Real processes on 127.0.0.1: the sensor (``python -m sensor.cli``, ``log_level: debug``) and the collector
(``python -m collector serve``, SQLite) are subprocesses; the backend (``CountingBackend``) and the
clients run in the test. The collector is killed with SIGKILL (a crash, no shutdown) for OUTAGE_SECONDS
(a few seconds in CI, 30 s with ``APIWARD_HARDENING_FULL=1``) while four clients keep sending requests.

"Nothing lost, nothing twice", per request and without any change to the wire contract:

- the backend records the ``X-Request-ID`` the sensor put on every request it served;
- the sensor logs every exchange at debug level (``request_proxied`` and ``request_analysed``, both with
  ``request_id``; the latter with the endpoint template); its JSON log lines are read back;
- the set of ids the backend served == the set the sensor proxied == the set it analysed, each exactly
  once (and == the ids the clients got back in ``X-Request-ID``);
- the collector's per-endpoint totals == the per-endpoint counts of those ids (and == the backend's own
  per-endpoint counts), also after the sensor has stopped (no late duplicates).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import INGEST, READ, CountingBackend, serve, wait_for
from tests.e2e.test_outage import CollectorProcess
from tests.hardening.conftest import size

OUTAGE_SECONDS = size(4, 30)
WORKERS = 4


async def _collector_counts(url: str) -> dict[str, int]:
    """``"METHOD /template"`` -> requests_30d over every page of ``GET /api/v1/endpoints``."""
    counts: dict[str, int] = {}
    cursor: str | None = None
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {READ}"}) as s:
        while True:
            params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
            async with s.get(url + "/api/v1/endpoints", params=params) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            for e in page["items"]:
                key = f"{e['method']} {e['path']}"
                counts[key] = counts.get(key, 0) + e["requests_30d"]
            cursor = page.get("next_cursor")
            if not cursor:
                return counts


def _sensor_events(log_text: str) -> list[dict[str, Any]]:
    events = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line cut by the process's end
    return events


class Clients:
    """WORKERS sequential clients through the sensor, a mix of endpoints; some send their own request id
    (kept by the sensor), some an unsafe one (replaced by the sensor)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answered: list[tuple[int, str]] = []  # (status, X-Request-ID of the answer)
        self.own_ids: set[str] = set()  # safe ids the clients chose
        self.errors: list[str] = []
        self.stop = asyncio.Event()

    async def _worker(self, w: int) -> None:
        async with aiohttp.ClientSession(self.url) as client:
            i = 0
            while not self.stop.is_set():
                headers: dict[str, str] = {}
                if i % 5 == 0:
                    headers["X-Request-ID"] = f"client-{w}-{i}"
                elif i % 7 == 0:
                    headers["X-Request-ID"] = "not a safe id; drop it"
                kind = i % 4
                item = w * 1_000_000 + i  # numeric ids: the sensor templates /items/{id} from the start
                try:
                    if kind == 0:
                        req = client.get(f"/items/{item}", headers={**headers, "Authorization": "Bearer opaque-1"})
                    elif kind == 1:
                        req = client.get("/public/catalog", headers=headers)
                    elif kind == 2:
                        req = client.post("/items", json={"name": f"n{item}"}, headers=headers)
                    else:
                        req = client.get("/private/report", headers={**headers, "X-Api-Key": "report-key-1234567890"})
                    async with req as resp:
                        await resp.read()
                        self.answered.append((resp.status, resp.headers.get("X-Request-ID", "")))
                        if "X-Request-ID" in headers and headers["X-Request-ID"].startswith("client-"):
                            self.own_ids.add(headers["X-Request-ID"])
                except aiohttp.ClientError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                i += 1
                await asyncio.sleep(0.005)

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.ensure_future(self._worker(w)) for w in range(WORKERS)]


@pytest.mark.slow
@pytest.mark.timeout(120 + 2 * OUTAGE_SECONDS)
async def test_every_served_request_id_is_counted_once_across_a_collector_crash(
    tmp_path: Path, sensor_factory: Any
) -> None:
    backend = CountingBackend()
    backend_runner, backend_port = await serve(backend.app)
    collector = CollectorProcess(tmp_path / "collector.db", free_port())
    collector.start()
    sensor = sensor_factory(
        "sensor",
        upstream=f"http://127.0.0.1:{backend_port}",
        collector=collector.url,
        ingest_token=INGEST,
        window=1.0,
        api_name="accounting",
        log_level="debug",  # one request_proxied and one request_analysed line per exchange
        ship_backoff_max=1.0,
    )
    clients = Clients(sensor.url)
    tasks: list[asyncio.Task[None]] = []
    try:
        sensor.start()
        tasks = clients.start()
        await asyncio.sleep(3.0)
        collector.kill()  # SIGKILL: batches in flight may have been stored without their answer
        before_outage = len(clients.answered)
        await asyncio.sleep(OUTAGE_SECONDS)
        during_outage = len(clients.answered) - before_outage
        collector.start()  # same port, same database
        await asyncio.sleep(3.0)
        clients.stop.set()
        await asyncio.gather(*tasks)
        served = len(backend.request_ids)

        async def all_counted() -> bool:
            return sum((await _collector_counts(collector.url)).values()) >= served

        # The sensor is still running: the last window closes and every spooled batch is shipped.
        assert await wait_for(all_counted, timeout=30.0), (served, await _collector_counts(collector.url))
        sensor.stop()  # SIGTERM: closes its (empty) window and flushes
        await asyncio.sleep(1.0)  # anything the stopping sensor still shipped has arrived
        in_collector = await _collector_counts(collector.url)
    finally:
        clients.stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sensor.stop()
        collector.stop()
        await backend_runner.cleanup()

    assert not clients.errors, clients.errors[:5]
    assert during_outage > 50, "no traffic while the collector was down: the test proves nothing"
    events = _sensor_events(sensor.logs())
    names = Counter(e.get("event") for e in events)
    assert names["collector_unreachable"] >= 1 and names["batch_spooled"] >= 1, names  # the outage was real
    assert names["collector_reachable"] >= 1, names

    # Backend == clients: every answer came from the backend, with the id the backend saw.
    backend_ids = [rid for rid, _, _ in backend.request_ids]
    assert served == len(clients.answered) > 200
    assert {status for status, _ in clients.answered} <= {200, 201}  # all answered by the backend
    assert all(rid for rid in backend_ids), "a request reached the backend without X-Request-ID"
    assert len(set(backend_ids)) == served, "two backend requests share an id"
    assert sorted(backend_ids) == sorted(rid for _, rid in clients.answered)
    assert clients.own_ids and clients.own_ids <= set(backend_ids)  # safe client ids are kept end to end
    assert not any(" " in rid for rid in backend_ids)  # unsafe ones were replaced

    # Backend == sensor, each id exactly once in each stage.
    proxied = Counter(e["request_id"] for e in events if e.get("event") == "request_proxied")
    analysed = Counter(e["request_id"] for e in events if e.get("event") == "request_analysed")
    assert set(proxied) == set(analysed) == set(backend_ids)
    assert max(proxied.values()) == max(analysed.values()) == 1
    assert names["analysis_failed"] == 0

    # Collector == the per-endpoint counts of those ids (and the backend's own counts), no duplicates.
    endpoint_of = {e["request_id"]: e["endpoint"] for e in events if e.get("event") == "request_analysed"}
    by_endpoint = Counter(endpoint_of[rid] for rid in backend_ids)
    assert in_collector == dict(by_endpoint)
    assert dict(by_endpoint) == {f"{m} {t}": n for (m, t), n in backend.served.items()}

