"""Ships batches of summaries and alerts to the collector: queue, gzip, retry, bounded disk spool.

Guarantees, in order of importance:

- ``submit`` never blocks on the network and never raises: it is called from the event loop that also
  serves traffic.
- At-least-once delivery, in ``seq`` order: a batch is retried with the same ``batch_id`` (the
  collector's idempotency key) until the collector answers 2xx, or rejects it with a 4xx that a retry
  cannot fix (then it is parked in ``spool_dir/rejected/`` for a human, never retried forever).
- Bounded memory and disk: at most ``queue_max_batches`` batches in memory; while the collector is
  away batches live in ``spool_dir`` (one file per batch, written atomically) up to
  ``spool_max_bytes``; beyond that the *oldest* batch is dropped - and counted. The drop counters ride
  in the ``stats`` of every batch sent afterwards, so the collector can show the gap.
- Nothing is lost on a graceful ``stop()``: what cannot be sent within the timeout is spooled, and
  the next run sends it first.

Disk IO on the sender's side (spooling, reading back, gzip) runs in worker threads so a slow disk
does not stall the event loop; the spool index itself is only ever touched on the loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import random
import re
import time
import uuid
from bisect import insort
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import msgspec
from yarl import URL

from apiward.logs import get_logger
from apiward.tasks import stop_tasks
from sensor.events import (
    AlertEvent,
    Batch,
    EndpointSummary,
    SensorInfo,
    SensorStats,
    decode_batch,
    encode_batch,
)

if TYPE_CHECKING:
    import aiohttp

log = get_logger("sensor.shipper")

EVENTS_PATH = "/api/v1/events"
REJECTED_DIR = "rejected"
SEQ_FILE = "seq"
# "<seq, 20 digits>-<summaries>-<requests>.json.gz": the counts are in the name so that a spool left by
# a previous run can be indexed (and its drops counted exactly) without decoding every file.
_SPOOL_NAME = re.compile(r"^(\d{20})-(\d+)-(\d+)\.json\.gz$")
_UNREACHABLE_LOG_INTERVAL = 60.0  # seconds between two collector_unreachable lines during one outage
_PROBLEM_READ_MAX = 4096  # bytes of an error body read for the log
# Answers that say this batch itself is unacceptable; retrying it could never succeed.
_BATCH_FAULT_STATUSES = frozenset({400, 413, 415, 422})
_DETAIL_MAX = 300  # characters of problem detail logged
_MAX_ERRORS_PER_BATCH = 5


@dataclass(slots=True)
class _Item:
    """One batch on its way: in memory (``batch``), on disk (``spooled``), or both."""

    seq: int
    batch_id: str  # "" until a batch spooled by a previous run is read back
    summaries: int
    requests: int
    batch: Batch | None
    size: int = 0  # bytes on disk while spooled
    spooled: bool = False
    attempts: int = 0
    failures: int = 0  # consecutive retriable failures, drives the back-off
    errors: int = 0  # unexpected exceptions while sending it (bugs), bounded

    @property
    def filename(self) -> str:
        return f"{self.seq:020d}-{self.summaries}-{self.requests}.json.gz"


@dataclass(slots=True, frozen=True)
class _Outcome:
    kind: Literal["ok", "rejected", "retry"]
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None


def _encode_gzip(batch: Batch) -> bytes:
    # mtime=0: the same batch always compresses to the same bytes, so re-spooling it is idempotent.
    return gzip.compress(encode_batch(batch), compresslevel=6, mtime=0)


def _decode_gzip(data: bytes) -> Batch:
    return decode_batch(gzip.decompress(data))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(directory: str, name: str, data: bytes) -> None:
    """tmp + fsync + rename (+ fsync of the directory): a reader sees the whole file or none of it."""
    final = os.path.join(directory, name)
    # A unique tmp name: a write abandoned by a cancelled task may still be running in its thread.
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _problem_detail(raw: bytes) -> str:
    """The ``detail`` (or ``title``) of a problem document, else the start of the body as text."""
    text = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:_DETAIL_MAX]
    if isinstance(doc, dict):
        for key in ("detail", "title"):
            if isinstance(doc.get(key), str):
                return str(doc[key])[:_DETAIL_MAX]
    return text[:_DETAIL_MAX]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: rare from our collector, fall back to the back-off


class Shipper:
    """Queues batches and sends them to ``POST {collector_url}/api/v1/events`` from one task.

    ``submit`` must be called from the event loop thread (it is synchronous and cheap). With
    ``collector_url=None`` batches are logged and discarded (standalone / dev mode) and nothing is
    written to disk.
    """

    def __init__(
        self,
        collector_url: str | None,
        token: str | None,
        sensor: SensorInfo,
        *,
        spool_dir: str,
        spool_max_bytes: int,
        queue_max_batches: int,
        stats: Callable[[], SensorStats] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        request_timeout: float = 10.0,
        rejected_max_files: int = 100,
    ) -> None:
        self._url = None if collector_url is None else collector_url.rstrip("/") + EVENTS_PATH
        # Logged instead of the URL itself: never let userinfo from a URL reach the logs.
        self._url_for_log = None if self._url is None else str(URL(self._url).with_user(None))
        self._token = token
        self._sensor = sensor
        self._spool_dir = spool_dir
        self._rejected_dir = os.path.join(spool_dir, REJECTED_DIR)
        self._spool_max_bytes = max(0, spool_max_bytes)
        self._queue_max = max(1, queue_max_batches)
        self._stats = stats
        self._backoff_initial = max(0.0, backoff_initial)
        self._backoff_max = max(self._backoff_initial, backoff_max)
        self._request_timeout = request_timeout
        self._rejected_max_files = max(1, rejected_max_files)

        self._queue: deque[_Item] = deque()  # in memory, seq order
        self._spool: dict[int, _Item] = {}  # on disk, by seq
        self._spool_order: list[int] = []  # sorted seqs of self._spool
        self._spool_bytes = 0
        self._current: _Item | None = None  # the batch the sender is working on (never evicted)
        self._spilling: dict[int, _Item] = {}  # taken from the queue, being written to the spool

        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = False
        self._rng = random.Random()
        self._last_seq = 0

        # Outage bookkeeping for the rate-limited collector_unreachable line.
        self._down_since: float | None = None
        self._last_unreachable_log = float("-inf")
        self._failures_since_log = 0

        # Counters (cumulative since construction), read by metrics.
        self.shipped_batches = 0
        self.shipped_summaries = 0
        self.shipped_requests = 0
        self.shipped_bytes = 0
        self.retries = 0  # failed attempts that were (or will be) retried
        self.dropped_batches = 0  # lost: spool over its limit, unreadable spool file, or no disk
        self.dropped_summaries = 0
        self.dropped_requests = 0
        self.rejected_batches = 0  # refused by the collector with a non-retriable 4xx
        self.spool_write_errors = 0

        if self._url is not None:
            # Fail start-up loudly when the spool directory is unusable (configuration error).
            os.makedirs(self._rejected_dir, exist_ok=True)
            self._load_spool()
            self._enforce_spool_limit()
        if not self._spool:
            self._idle.set()

    # -- public surface ---------------------------------------------------------------------------

    @property
    def spooled_batches(self) -> int:
        """Batches currently waiting in the disk spool."""
        return len(self._spool)

    @property
    def spooled_bytes(self) -> int:
        return self._spool_bytes

    @property
    def queued_batches(self) -> int:
        return len(self._queue)

    @property
    def pending_batches(self) -> int:
        """Batches not yet delivered (memory + disk + the one in flight)."""
        current = self._current
        extra = 1 if current is not None and not current.spooled else 0
        return len(self._queue) + len(self._spool) + len(self._spilling) + extra

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def submit(
        self,
        summaries: Sequence[EndpointSummary],
        alerts: Sequence[AlertEvent] = (),
        *,
        heartbeat: bool = False,
    ) -> None:
        """Wrap summaries and alerts into a batch and queue it. Never blocks on the network, never raises.

        An empty submission is ignored unless ``heartbeat`` is set (the collector then still learns
        the sensor is alive, and its latest stats).
        """
        try:
            if not summaries and not alerts and not heartbeat:
                return
            seq = self._next_seq()
            batch = Batch(
                batch_id=uuid.uuid4().hex,
                sensor=self._sensor,
                created_at=datetime.now(UTC),
                seq=seq,
                summaries=list(summaries),
                alerts=list(alerts),
                stats=self._current_stats(),
            )
            item = _Item(
                seq=seq,
                batch_id=batch.batch_id,
                summaries=len(batch.summaries),
                requests=sum(s.requests for s in batch.summaries),
                batch=batch,
            )
            if self._url is None:
                log.info(
                    "batch_logged",
                    batch_id=item.batch_id,
                    seq=seq,
                    summaries=item.summaries,
                    requests=item.requests,
                    alerts=len(batch.alerts),
                )
                return
            if len(self._queue) >= self._queue_max:
                # Rare: the sender has not drained queue_max_batches windows. Spill synchronously to
                # keep memory bounded (the sender normally spills during an outage, off the loop).
                self._spill_sync(self._queue.popleft())
            self._queue.append(item)
            self._idle.clear()
            self._wake.set()
        except Exception:
            log.exception("submit_failed")

    async def start(self) -> None:
        """Start the sender task; batches spooled by a previous run go first, in seq order."""
        if self._url is None or self._task is not None:
            return
        # Imported on first use: a replay without a collector never loads the HTTP client stack.
        import aiohttp

        self._stopping = False
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
            connector=aiohttp.TCPConnector(limit=2),
        )
        self._task = asyncio.create_task(self._run(), name="apiward-shipper")
        if self._spool:
            log.info("spool_resumed", batches=len(self._spool), bytes=self._spool_bytes)

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (spill step must outlive it)
        """Send what is pending within ``timeout``, spool the rest, close the HTTP session."""
        if self._url is None:
            return
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            if task is not None:
                await asyncio.wait({task}, timeout=timeout)
                await stop_tasks([task])  # cancels it if still sending; logs it if it had failed
        finally:
            # Also when stop() itself is cancelled: the sender is told to stop (it only awaits, so it
            # cannot touch the queue before it sees the cancellation) and memory goes to disk.
            if task is not None and not task.done():
                task.cancel()
            self._spill_all_sync()
            if self._spool:
                self._idle.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        log.info(
            "shipper_stopped",
            shipped_batches=self.shipped_batches,
            spooled_batches=len(self._spool),
            dropped_batches=self.dropped_batches,
        )

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 (mirrors stop)
        """Wait until every pending batch is delivered (or rejected); False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # -- batch construction -----------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._last_seq += 1
        if self._url is not None:
            try:
                # Rename without fsync: survives a process crash (page cache), which is what restarts
                # need; after a power loss the spool file names still push the seq past what was kept.
                tmp = os.path.join(self._spool_dir, SEQ_FILE + ".tmp")
                with open(tmp, "w", encoding="ascii") as fh:
                    fh.write(str(self._last_seq))
                os.replace(tmp, os.path.join(self._spool_dir, SEQ_FILE))
            except OSError as exc:
                log.warning("seq_persist_failed", error=str(exc))
        return self._last_seq

    def _current_stats(self) -> SensorStats:
        base = SensorStats()
        if self._stats is not None:
            try:
                base = self._stats()
            except Exception:
                log.exception("stats_callback_failed")
        # The shipper is the authority on its own losses.
        return msgspec.structs.replace(
            base,
            dropped_batches=self.dropped_batches,
            dropped_summaries=self.dropped_summaries,
            dropped_requests=self.dropped_requests,
            spooled_batches=len(self._spool),
        )

    # -- spool ------------------------------------------------------------------------------------

    def _load_spool(self) -> None:
        last = 0
        with (
            contextlib.suppress(OSError, ValueError),
            open(os.path.join(self._spool_dir, SEQ_FILE), encoding="ascii") as fh,
        ):
            last = int(fh.read().strip() or 0)
        for name in os.listdir(self._spool_dir):
            if name.endswith(".tmp"):
                # Half-written by a run that died mid-write: never renamed, so never a batch.
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._spool_dir, name))
                continue
            m = _SPOOL_NAME.match(name)
            if m is None:
                continue
            seq, summaries, requests = int(m[1]), int(m[2]), int(m[3])
            try:
                size = os.path.getsize(os.path.join(self._spool_dir, name))
            except OSError:
                continue
            item = _Item(seq, "", summaries, requests, None, size=size, spooled=True)
            self._spool[seq] = item
            self._spool_bytes += size
            last = max(last, seq)
        self._spool_order = sorted(self._spool)
        for name in os.listdir(self._rejected_dir):
            m = _SPOOL_NAME.match(name)
            if m is not None:
                last = max(last, int(m[1]))
        self._last_seq = last

    def _index_add(self, item: _Item, size: int) -> None:
        item.spooled = True
        item.size = size
        self._spool[item.seq] = item
        insort(self._spool_order, item.seq)
        self._spool_bytes += size
        if item is not self._current:
            item.batch = None  # on disk now; only the batch in flight stays in memory
        log.info("batch_spooled", batch_id=item.batch_id, seq=item.seq, bytes=size, spooled=len(self._spool))
        self._enforce_spool_limit()

    def _index_remove(self, item: _Item) -> None:
        if self._spool.pop(item.seq, None) is not None:
            self._spool_order.remove(item.seq)
            self._spool_bytes -= item.size
        item.spooled = False

    def _enforce_spool_limit(self) -> None:
        """Drop the oldest spooled batches until the spool fits; the batch in flight is spared."""
        inflight = self._current.seq if self._current is not None else None
        while self._spool_bytes > self._spool_max_bytes:
            victim = next((s for s in self._spool_order[:2] if s != inflight), None)
            if victim is None:
                break
            item = self._spool[victim]
            self._index_remove(item)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._spool_dir, item.filename))
            self._count_drop(item, "spool_full")

    def _count_drop(self, item: _Item, reason: str) -> None:
        self.dropped_batches += 1
        self.dropped_summaries += item.summaries
        self.dropped_requests += item.requests
        log.warning(
            "batch_dropped",
            reason=reason,
            batch_id=item.batch_id or None,
            seq=item.seq,
            summaries=item.summaries,
            requests=item.requests,
            dropped_batches=self.dropped_batches,
        )

    def _spill_sync(self, item: _Item) -> None:
        """Write one in-memory batch to the spool on the calling thread; drop it if the disk fails."""
        if item.spooled or item.batch is None:
            return
        try:
            data = _encode_gzip(item.batch)
            _write_atomic(self._spool_dir, item.filename, data)
        except Exception as exc:  # disk full, permissions - or a batch that cannot be encoded at all
            self.spool_write_errors += 1
            log.error("spool_write_failed", seq=item.seq, error=str(exc))
            self._count_drop(item, "spool_write_failed")
            return
        self._index_add(item, len(data))

    async def _spill(self, item: _Item) -> bool:
        """Write one in-memory batch to the spool from a worker thread; False if the disk failed."""
        if item.spooled or item.batch is None:
            return True
        self._spilling[item.seq] = item
        try:
            batch = item.batch
            data = await asyncio.to_thread(self._encode_and_write, item.filename, batch)
        except OSError as exc:
            self.spool_write_errors += 1
            log.error("spool_write_failed", seq=item.seq, error=str(exc))
            return False
        except Exception as exc:
            # Not encodable (e.g. a detector put an odd object in alert evidence): it never will be,
            # so drop it, counted, rather than let it block every batch behind it.
            if item is not self._current:
                self._drop_unencodable(item, exc)
            return True
        finally:
            self._spilling.pop(item.seq, None)
        self._index_add(item, len(data))
        return True

    def _drop_unencodable(self, item: _Item, exc: BaseException) -> None:
        log.error("batch_unencodable", seq=item.seq, error=f"{type(exc).__name__}: {exc}"[:_DETAIL_MAX])
        item.batch = None
        self._count_drop(item, "unencodable")

    def _encode_and_write(self, name: str, batch: Batch) -> bytes:
        data = _encode_gzip(batch)
        _write_atomic(self._spool_dir, name, data)
        return data

    async def _spill_queue(self) -> bool:
        while self._queue:
            item = self._queue.popleft()
            if not await self._spill(item):
                # Keep it in memory (still bounded by the queue) and try again later.
                self._queue.appendleft(item)
                return False
        return True

    def _spill_all_sync(self) -> None:
        """At shutdown: everything still only in memory goes to disk, oldest first."""
        pending: dict[int, _Item] = {}
        if self._current is not None:
            pending[self._current.seq] = self._current
        pending.update(self._spilling)
        pending.update((item.seq, item) for item in self._queue)
        self._queue.clear()
        self._spilling.clear()
        self._current = None
        for seq in sorted(pending):
            self._spill_sync(pending[seq])

    def _read_spooled(self, item: _Item) -> Batch:
        with open(os.path.join(self._spool_dir, item.filename), "rb") as fh:
            return _decode_gzip(fh.read())

    # -- sender -----------------------------------------------------------------------------------

    def _pick(self) -> _Item | None:
        """The lowest seq waiting, on disk or in memory."""
        spool_head = self._spool_order[0] if self._spool_order else None
        if self._queue and (spool_head is None or self._queue[0].seq < spool_head):
            return self._queue.popleft()
        return None if spool_head is None else self._spool[spool_head]

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            item = self._pick()
            if item is None:
                self._idle.set()
                if self._stopping:
                    return
                await self._wake.wait()
                continue
            self._current = item
            try:
                finished = await self._deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let the sender die on a bug: log, put the batch back, try again after a pause
                # - but not forever, or one poisoned batch would hold back all the others.
                log.exception("shipper_error", seq=item.seq)
                if self._stopping:
                    return  # stop() spools the batch in flight
                self._current = None
                item.errors += 1
                if item.errors >= _MAX_ERRORS_PER_BATCH:
                    if item.spooled:
                        self._index_remove(item)
                        with contextlib.suppress(OSError):
                            os.unlink(os.path.join(self._spool_dir, item.filename))
                    self._count_drop(item, "sender_error")
                elif not item.spooled:
                    self._queue.appendleft(item)
                await self._backoff_wait(self._backoff_max)
                continue
            if not finished:
                return  # stopping with the collector away: stop() spools what is left
            self._current = None

    async def _deliver(self, item: _Item) -> bool:
        """Send ``item`` until it is delivered or rejected (True), or until stop() gives up (False)."""
        while True:
            if item.batch is None:
                try:
                    item.batch = await asyncio.to_thread(self._read_spooled, item)
                except (OSError, EOFError, gzip.BadGzipFile, msgspec.DecodeError) as exc:
                    await self._park_unreadable(item, exc)
                    return True
                item.batch_id = item.batch.batch_id
            # Fresh stats at every attempt: a batch that waited through an outage tells the collector
            # about the drops that happened meanwhile (the batch_id, hence idempotency, is unchanged).
            try:
                body = await asyncio.to_thread(
                    _encode_gzip, msgspec.structs.replace(item.batch, stats=self._current_stats())
                )
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                self._drop_unencodable(item, exc)
                return True
            item.attempts += 1
            outcome = await self._post(body)
            if outcome.kind == "ok":
                self._delivered(item, len(body))
                return True
            if outcome.kind == "rejected":
                await self._reject(item, outcome)
                return True
            item.failures += 1
            self.retries += 1
            self._note_unreachable(outcome)
            await self._spill_pending(item)
            if self._stopping:
                return False
            await self._backoff_wait(self._delay(item.failures, outcome.retry_after))

    async def _spill_pending(self, item: _Item) -> None:
        """The collector is away: persist the batch in flight and everything queued behind it."""
        await self._spill(item)
        await self._spill_queue()

    def _delay(self, failures: int, retry_after: float | None) -> float:
        base = min(self._backoff_max, self._backoff_initial * 2.0 ** min(failures - 1, 30))
        # "Equal jitter": at least half the back-off, so many sensors do not retry in lockstep.
        delay = base / 2 + self._rng.uniform(0, base / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._backoff_max))
        return delay

    async def _backoff_wait(self, delay: float) -> None:
        """Sleep ``delay``, spilling batches submitted meanwhile; return early when stop() is called."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        disk_ok = True
        while not self._stopping:
            self._wake.clear()
            if self._queue and disk_ok:
                # A failing disk is retried at the next back-off, not in a tight loop here.
                disk_ok = await self._spill_queue()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return

    async def _post(self, body: bytes) -> _Outcome:
        import aiohttp  # loaded by start() already; a dictionary lookup here

        session = self._session
        if session is None or self._url is None:
            return _Outcome("retry", detail="no session")
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with session.post(self._url, data=body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                if 200 <= status < 300:
                    await resp.read()
                    return _Outcome("ok", status)
                raw = await resp.content.read(_PROBLEM_READ_MAX)
                detail = _problem_detail(raw)
                if status in _BATCH_FAULT_STATUSES:
                    return _Outcome("rejected", status, detail)
                # Everything else is the deployment's fault, not the batch's: 5xx, 408, 429, a wrong or
                # rotated token (401/403), a wrong URL (404, 1xx/3xx). Keep the batch (the spool bound
                # keeps that safe) and let the log tell the operator; it goes out once that is fixed.
                return _Outcome("retry", status, detail, _retry_after(resp.headers.get("Retry-After")))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _Outcome("retry", None, f"{type(exc).__name__}: {exc}"[:_DETAIL_MAX])

    def _delivered(self, item: _Item, nbytes: int) -> None:
        if item.spooled:
            self._index_remove(item)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._spool_dir, item.filename))
        item.batch = None
        self.shipped_batches += 1
        self.shipped_summaries += item.summaries
        self.shipped_requests += item.requests
        self.shipped_bytes += nbytes
        if self._down_since is not None:
            log.info("collector_reachable", down_for_s=round(time.monotonic() - self._down_since, 3))
            self._down_since = None
            self._failures_since_log = 0
            self._last_unreachable_log = float("-inf")
        log.info(
            "batch_shipped",
            batch_id=item.batch_id,
            seq=item.seq,
            summaries=item.summaries,
            requests=item.requests,
            bytes=nbytes,
            attempts=item.attempts,
        )

    def _note_unreachable(self, outcome: _Outcome) -> None:
        """One collector_unreachable line per outage per interval, not one per retry."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        self._failures_since_log += 1
        if now - self._last_unreachable_log < _UNREACHABLE_LOG_INTERVAL:
            return
        log.warning(
            "collector_unreachable",
            url=self._url_for_log,
            status=outcome.status,
            error=outcome.detail,
            failures=self._failures_since_log,
            down_for_s=round(now - self._down_since, 3),
            spooled_batches=len(self._spool),
        )
        self._last_unreachable_log = now
        self._failures_since_log = 0

    async def _reject(self, item: _Item, outcome: _Outcome) -> None:
        self.rejected_batches += 1
        log.error(
            "batch_rejected",
            batch_id=item.batch_id,
            seq=item.seq,
            status=outcome.status,
            detail=outcome.detail,
            summaries=item.summaries,
            requests=item.requests,
        )
        await self._park(item)

    async def _park_unreadable(self, item: _Item, exc: BaseException) -> None:
        log.error("spool_file_unreadable", seq=item.seq, error=f"{type(exc).__name__}: {exc}"[:_DETAIL_MAX])
        self._count_drop(item, "spool_unreadable")
        await self._park(item)

    async def _park(self, item: _Item) -> None:
        """Move a batch to ``rejected/`` (kept for inspection, bounded, never retried)."""
        dest = os.path.join(self._rejected_dir, item.filename)
        try:
            if item.spooled:
                os.replace(os.path.join(self._spool_dir, item.filename), dest)
            elif item.batch is not None:
                data = await asyncio.to_thread(_encode_gzip, item.batch)
                await asyncio.to_thread(_write_atomic, self._rejected_dir, item.filename, data)
        except OSError as exc:
            log.error("rejected_write_failed", seq=item.seq, error=str(exc))
        finally:
            self._index_remove(item)
            item.batch = None
        self._trim_rejected()

    def _trim_rejected(self) -> None:
        try:
            names = sorted(n for n in os.listdir(self._rejected_dir) if _SPOOL_NAME.match(n))
        except OSError:
            return
        for name in names[: max(0, len(names) - self._rejected_max_files)]:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._rejected_dir, name))


def shipper_metrics(shipper: Shipper) -> dict[str, int]:
    """The shipper's counters as a flat mapping (for /metrics and debug endpoints)."""
    return {
        "shipped_batches": shipper.shipped_batches,
        "shipped_summaries": shipper.shipped_summaries,
        "shipped_requests": shipper.shipped_requests,
        "shipped_bytes": shipper.shipped_bytes,
        "retries": shipper.retries,
        "spooled_batches": shipper.spooled_batches,
        "spooled_bytes": shipper.spooled_bytes,
        "queued_batches": shipper.queued_batches,
        "dropped_batches": shipper.dropped_batches,
        "dropped_summaries": shipper.dropped_summaries,
        "dropped_requests": shipper.dropped_requests,
        "rejected_batches": shipper.rejected_batches,
        "spool_write_errors": shipper.spool_write_errors,
    }
