"""Shipper against a real aiohttp receiver on 127.0.0.1 (no mocks of our code).

The receiver can be switched to answer 503, to answer 400, or to refuse connections (its site is
stopped). It keeps the raw request bodies so that the tests see what went over the wire.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from sensor.events import (
    AlertClient,
    AlertEndpoint,
    AlertEvent,
    Batch,
    EndpointSummary,
    SensorInfo,
    SensorStats,
    decode_batch,
)
from sensor.shipper import Shipper
from tests.conftest import free_port

TOKEN = "s3cret-ingest-token"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SENSOR = SensorInfo(id="sensor-1", name="edge", version="0.1.0", mode="inline", started_at=NOW)


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes
    batch: Batch
    status: int


class Receiver:
    """A minimal collector that records every attempt.

    ``mode``: "ok" (202), a status code as text ("503", "429", "408", "400"), or "hang" (accept the
    request, answer only once ``release`` is set).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.mode = "ok"
        self.attempts: list[Received] = []
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def delivered(self) -> list[Batch]:
        """Batches answered with 2xx, duplicates included (so tests can check exactly-once)."""
        return [r.batch for r in self.attempts if r.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()  # raw bytes: the runner does not decompress
        batch = decode_batch(gzip.decompress(raw))
        if self.mode == "hang":
            await self.release.wait()
        status = 202 if self.mode in ("ok", "hang") else int(self.mode)
        self.attempts.append(Received(dict(request.headers), raw, batch, status))
        if status == 400:
            problem = {"type": "about:blank", "title": "Bad batch", "status": 400, "detail": "schema mismatch"}
            return web.json_response(problem, status=400, content_type="application/problem+json")
        if status >= 400:
            headers = {"Retry-After": "0"} if status == 429 else None
            return web.json_response({"title": "Try later", "status": status}, status=status, headers=headers)
        return web.json_response({"accepted": True}, status=202)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/events", self._handle)
        self._runner = web.AppRunner(app, auto_decompress=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()  # never leave a handler hanging (cleanup would wait for it)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(free_port())  # not started: a test starts it when the collector should be "up"
    yield rec
    await rec.stop()


@pytest.fixture
async def make_shipper(tmp_path: Path) -> AsyncIterator[Callable[..., Shipper]]:
    made: list[Shipper] = []

    def make(url: str | None, **kw: Any) -> Shipper:
        opts: dict[str, Any] = {
            "spool_dir": str(tmp_path / "spool"),
            "spool_max_bytes": 10 * 1024 * 1024,
            "queue_max_batches": 4,
            "backoff_initial": 0.02,
            "backoff_max": 0.1,
            "request_timeout": 2.0,
        }
        opts.update(kw)
        shipper = Shipper(url, TOKEN, SENSOR, **opts)
        made.append(shipper)
        return shipper

    yield make
    for shipper in made:
        await shipper.stop(timeout=0.5)


def summary(requests: int, path: str = "/items/{id}") -> EndpointSummary:
    return EndpointSummary(
        api="shop",
        method="GET",
        path=path,
        window_start=NOW,
        window_end=NOW,
        first_seen=NOW,
        last_seen=NOW,
        requests=requests,
    )


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def spool_files(spool: Path) -> list[str]:
    return sorted(n for n in os.listdir(spool) if n.endswith(".json.gz"))


def assert_exactly_once_in_order(batches: list[Batch], expected_seqs: list[int]) -> None:
    ids = [b.batch_id for b in batches]
    assert len(ids) == len(set(ids)), "a batch was delivered twice"
    assert [b.seq for b in batches] == expected_seqs


async def test_collector_down_then_up_delivers_every_batch_once_in_order(
    receiver: Receiver, make_shipper: Callable[..., Shipper], tmp_path: Path
) -> None:
    shipper = make_shipper(receiver.url)
    await shipper.start()
    with capture_logs() as logs:
        for i in range(10):
            shipper.submit([summary(i + 1), summary(100, path="/other")])
            await asyncio.sleep(0.01)
        await until(lambda: shipper.retries >= 5)
        assert shipper.spooled_batches > 0  # while nothing listens, batches wait on disk
        await receiver.start()
        assert await shipper.flush(5)

    assert_exactly_once_in_order(receiver.delivered, list(range(1, 11)))
    assert sum(s.requests for b in receiver.delivered for s in b.summaries) == sum(range(1, 11)) + 1000
    assert shipper.shipped_batches == 10
    assert shipper.spooled_batches == 0
    assert spool_files(tmp_path / "spool") == []
    # Rate-limited: one line for the outage, not one per retry; one line per shipped batch.
    events = [e["event"] for e in logs]
    assert events.count("collector_unreachable") == 1
    assert events.count("collector_reachable") == 1
    shipped = [e for e in logs if e["event"] == "batch_shipped"]
    assert len(shipped) == 10
    assert {"batch_id", "seq", "summaries", "requests", "bytes", "attempts"} <= shipped[0].keys()
    assert shipped[0]["requests"] == 101
    assert TOKEN not in repr(logs)

    # The collector goes away mid-run (site stopped) and comes back: still once each, in order.
    await receiver.stop()
    for _ in range(3):
        shipper.submit([summary(1)])
    await until(lambda: shipper.retries >= 8)
    await receiver.start()
    assert await shipper.flush(5)
    assert_exactly_once_in_order(receiver.delivered, list(range(1, 14)))


# 401/403/404 are the deployment's fault (token, URL), not the batch's: kept and retried until fixed.
@pytest.mark.parametrize("status", ["503", "429", "408", "401", "403", "404"])
async def test_retriable_status_is_retried_with_the_same_batch_id(
    status: str, receiver: Receiver, make_shipper: Callable[..., Shipper]
) -> None:
    receiver.mode = status
    await receiver.start()
    shipper = make_shipper(receiver.url)
    await shipper.start()
    shipper.submit([summary(7)])
    shipper.submit([summary(8)])
    await until(lambda: len(receiver.attempts) >= 3)
    receiver.mode = "ok"
    assert await shipper.flush(5)

    first_id = receiver.attempts[0].batch.batch_id
    failed = [r for r in receiver.attempts if r.status == int(status)]
    assert len(failed) >= 3
    assert {r.batch.batch_id for r in failed} == {first_id}  # order kept: the 2nd waits for the 1st
    assert_exactly_once_in_order(receiver.delivered, [1, 2])
    assert receiver.delivered[0].batch_id == first_id
    assert shipper.retries == len(failed)


async def test_400_is_rejected_counted_parked_and_not_retried(
    receiver: Receiver, make_shipper: Callable[..., Shipper], tmp_path: Path
) -> None:
    receiver.mode = "400"
    await receiver.start()
    shipper = make_shipper(receiver.url)
    await shipper.start()
    with capture_logs() as logs:
        shipper.submit([summary(5)])
        await until(lambda: shipper.rejected_batches == 1)
        await asyncio.sleep(0.3)  # several back-off periods: a retry would show up by now
    assert len(receiver.attempts) == 1
    assert shipper.retries == 0
    rejected = [e for e in logs if e["event"] == "batch_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["status"] == 400
    assert rejected[0]["detail"] == "schema mismatch"
    assert rejected[0]["batch_id"] == receiver.attempts[0].batch.batch_id
    parked = os.listdir(tmp_path / "spool" / "rejected")
    assert parked == [f"{1:020d}-1-5.json.gz"]
    assert decode_batch(gzip.decompress((tmp_path / "spool" / "rejected" / parked[0]).read_bytes())).seq == 1

    # The next batch is not held up by the rejected one.
    receiver.mode = "ok"
    shipper.submit([summary(6)])
    assert await shipper.flush(5)
    assert [b.seq for b in receiver.delivered] == [2]
    assert TOKEN not in repr(logs)


async def test_spool_survives_a_restart_and_seq_continues(
    receiver: Receiver, make_shipper: Callable[..., Shipper], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    first = make_shipper(receiver.url)
    await first.start()
    for i in range(5):
        first.submit([summary(i + 1)])
    await first.stop(timeout=1.0)  # nothing listens: everything is spooled
    files = spool_files(spool)
    assert len(files) == 5
    spooled_ids = [decode_batch(gzip.decompress((spool / f).read_bytes())).batch_id for f in files]
    assert (spool / "seq").read_text() == "5"

    second = make_shipper(receiver.url)
    assert second.spooled_batches == 5
    second.submit([summary(6)])  # submitted before start: seq continues after the spool's
    second.submit([summary(7)])
    assert second.last_seq == 7
    await receiver.start()
    await second.start()
    assert await second.flush(5)

    assert_exactly_once_in_order(receiver.delivered, [1, 2, 3, 4, 5, 6, 7])
    assert [b.batch_id for b in receiver.delivered[:5]] == spooled_ids  # same ids: idempotent resend
    assert sum(s.requests for b in receiver.delivered for s in b.summaries) == sum(range(1, 8))
    assert spool_files(spool) == []


async def test_graceful_stop_sends_what_is_queued(
    receiver: Receiver, make_shipper: Callable[..., Shipper], tmp_path: Path
) -> None:
    await receiver.start()
    shipper = make_shipper(receiver.url)
    for i in range(3):
        shipper.submit([summary(i + 1)])  # queued before start
    await shipper.start()
    await shipper.stop(timeout=2.0)
    assert_exactly_once_in_order(receiver.delivered, [1, 2, 3])
    assert spool_files(tmp_path / "spool") == []


async def test_stop_spools_what_could_not_be_sent_within_the_timeout(
    receiver: Receiver, make_shipper: Callable[..., Shipper], tmp_path: Path
) -> None:
    receiver.mode = "hang"  # accepts, never answers (until released)
    await receiver.start()
    shipper = make_shipper(receiver.url, request_timeout=30.0)
    await shipper.start()
    shipper.submit([summary(1)])
    shipper.submit([summary(2)])
    await until(lambda: len(receiver.attempts) == 0 and shipper.pending_batches == 2, 1.0)
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await shipper.stop(timeout=0.3)
    assert loop.time() - started < 1.0
    assert len(spool_files(tmp_path / "spool")) == 2  # the one in flight and the queued one

    # The next run sends both; the collector's idempotency absorbs a batch it may have half-seen.
    receiver.mode = "ok"
    receiver.release.set()
    nxt = make_shipper(receiver.url)
    await nxt.start()
    assert await nxt.flush(5)
    assert {b.seq for b in receiver.delivered} == {1, 2}
    assert spool_files(tmp_path / "spool") == []


async def test_spool_overflow_drops_oldest_and_reports_the_exact_loss(
    receiver: Receiver, make_shipper: Callable[..., Shipper]
) -> None:
    shipper = make_shipper(receiver.url, spool_max_bytes=1, queue_max_batches=1)
    await shipper.start()
    submitted = 0
    with capture_logs() as logs:
        for i in range(8):
            shipper.submit([summary(10 * (i + 1)), summary(i + 1, path="/b")])
            submitted += 11 * (i + 1)
            await asyncio.sleep(0.03)
        await until(lambda: shipper.dropped_batches >= 3)
        await receiver.start()
        assert await shipper.flush(5)

    delivered = receiver.delivered
    got = sum(s.requests for b in delivered for s in b.summaries)
    assert shipper.dropped_requests > 0
    assert submitted - got == shipper.dropped_requests
    assert shipper.dropped_batches + len(delivered) == 8
    assert shipper.dropped_summaries == 2 * shipper.dropped_batches
    assert len([e for e in logs if e["event"] == "batch_dropped"]) == shipper.dropped_batches
    seqs = [b.seq for b in delivered]
    assert seqs == sorted(seqs)
    # Stats are refreshed at send time: the last batch tells the collector about every drop...
    last = delivered[-1].stats
    assert (last.dropped_batches, last.dropped_summaries, last.dropped_requests) == (
        shipper.dropped_batches,
        shipper.dropped_summaries,
        shipper.dropped_requests,
    )
    # ...and so does every later one.
    shipper.submit([], heartbeat=True)
    assert await shipper.flush(5)
    assert receiver.delivered[-1].stats.dropped_requests == shipper.dropped_requests
    assert receiver.delivered[-1].summaries == []


async def test_wire_format_gzip_headers_and_stats(receiver: Receiver, make_shipper: Callable[..., Shipper]) -> None:
    await receiver.start()
    shipper = make_shipper(receiver.url + "/", stats=lambda: SensorStats(exchanges=42, analysis_errors=1))
    await shipper.start()
    shipper.submit([summary(3)])
    assert await shipper.flush(5)
    (rec,) = receiver.attempts
    assert rec.raw[:2] == b"\x1f\x8b"  # gzip magic: compressed on the wire
    assert rec.headers["Content-Encoding"] == "gzip"
    assert rec.headers["Content-Type"] == "application/json"
    assert rec.headers["Authorization"] == f"Bearer {TOKEN}"
    batch = rec.batch
    assert len(batch.batch_id) == 32
    int(batch.batch_id, 16)  # uuid4 hex
    assert batch.sensor == SENSOR
    assert batch.created_at.tzinfo is not None
    assert batch.created_at.utcoffset() == UTC.utcoffset(None)
    assert (batch.stats.exchanges, batch.stats.analysis_errors) == (42, 1)
    assert batch.stats.dropped_batches == 0


async def test_empty_submissions_are_ignored_unless_heartbeat(
    receiver: Receiver, make_shipper: Callable[..., Shipper]
) -> None:
    await receiver.start()
    shipper = make_shipper(receiver.url)
    await shipper.start()
    shipper.submit([])
    assert shipper.last_seq == 0
    shipper.submit([], heartbeat=True)
    assert await shipper.flush(5)
    assert [(b.seq, b.summaries) for b in receiver.delivered] == [(1, [])]


async def test_unreadable_spool_file_is_counted_as_dropped_and_parked(
    receiver: Receiver, make_shipper: Callable[..., Shipper], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / f"{3:020d}-2-40.json.gz").write_bytes(b"not gzip at all")
    (spool / f".{4:020d}-1-1.json.gz.abcd.tmp").write_bytes(b"half written")
    await receiver.start()
    shipper = make_shipper(receiver.url)
    assert shipper.last_seq == 3
    await shipper.start()
    shipper.submit([summary(1)])
    assert await shipper.flush(5)
    assert (shipper.dropped_batches, shipper.dropped_summaries, shipper.dropped_requests) == (1, 2, 40)
    assert [b.seq for b in receiver.delivered] == [4]
    assert receiver.delivered[0].stats.dropped_requests == 40
    assert os.listdir(spool / "rejected") == [f"{3:020d}-2-40.json.gz"]
    assert not [n for n in os.listdir(spool) if n.endswith(".tmp")]


async def test_standalone_mode_logs_and_discards(make_shipper: Callable[..., Shipper], tmp_path: Path) -> None:
    shipper = make_shipper(None)
    await shipper.start()
    with capture_logs() as logs:
        shipper.submit([summary(9)])
    assert [(e["event"], e["seq"], e["requests"]) for e in logs] == [("batch_logged", 1, 9)]
    assert await shipper.flush(0.1)
    await shipper.stop()
    assert not (tmp_path / "spool").exists()


async def test_submit_never_raises_even_when_stats_callback_fails(
    receiver: Receiver, make_shipper: Callable[..., Shipper]
) -> None:
    def broken() -> SensorStats:
        raise RuntimeError("boom")

    await receiver.start()
    shipper = make_shipper(receiver.url, stats=broken)
    await shipper.start()
    shipper.submit([summary(1)])
    assert await shipper.flush(5)
    assert receiver.delivered[0].stats == SensorStats()


async def test_a_batch_that_cannot_be_encoded_is_dropped_not_retried_forever(
    receiver: Receiver, make_shipper: Callable[..., Shipper]
) -> None:
    poisoned = AlertEvent(
        type="SIG_SQLI",
        title="SQL injection",
        severity="high",
        endpoint=AlertEndpoint(api="shop", method="GET", path="/items/{id}"),
        client=AlertClient(ip="203.0.113.9"),
        first_seen=NOW,
        last_seen=NOW,
        evidence={"oops": object()},  # a detector bug: not JSON-encodable
    )
    await receiver.start()
    shipper = make_shipper(receiver.url)
    await shipper.start()
    shipper.submit([summary(4)], [poisoned])
    shipper.submit([summary(5)])
    assert await shipper.flush(5)
    assert [b.seq for b in receiver.delivered] == [2]
    assert (shipper.dropped_batches, shipper.dropped_requests) == (1, 4)
    assert receiver.delivered[0].stats.dropped_requests == 4

    # Same while the collector is away (the poisoned batch meets the spool, not the wire first).
    await receiver.stop()
    shipper.submit([summary(6)])
    shipper.submit([summary(7)], [poisoned])
    shipper.submit([summary(8)])
    await until(lambda: shipper.dropped_batches == 2)
    await receiver.start()
    assert await shipper.flush(5)
    assert [b.seq for b in receiver.delivered] == [2, 3, 5]
    assert shipper.dropped_requests == 4 + 7
