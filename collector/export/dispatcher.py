"""One dispatcher task per exporter: claim due outbox rows, send, then delete, retry or dead-letter.

Back-off is per row (``backoff_initial * 2**(attempts-1)``, capped at ``backoff_max``, +-20% jitter so
replicas do not retry in step; one jitter draw per failed batch, so the batch stays together). After a
failed send the dispatcher also pauses for that delay before claiming again: a receiver that is down
gets a probe per back-off step, not the whole backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime, timedelta

from apiward.logs import get_logger
from collector.export.exporters import Exporter
from collector.export.metrics import ExportMetrics
from collector.export.records import ExportRecord, from_payload
from collector.store import Store
from collector.store import outbox_store as ob

log = get_logger("collector.export")

PURGE_INTERVAL = 3600.0  # seconds between dead-letter purges per dispatcher


def backoff(attempt: int, initial: float, cap: float, jitter: float = 0.2) -> float:
    """Delay before attempt ``attempt + 1`` (``attempt`` >= 1 failed attempts so far)."""
    base = min(cap, initial * 2.0 ** min(attempt - 1, 32))
    return float(base * random.uniform(1 - jitter, 1 + jitter))


class Dispatcher:
    def __init__(self, store: Store, exporter: Exporter, metrics: ExportMetrics, owner: str) -> None:
        self.store, self.exporter, self.metrics, self.owner = store, exporter, metrics, owner
        self.name = exporter.config.name
        self.wake = asyncio.Event()
        self.next_purge = 0.0  # monotonic time of the next dead-letter purge
        metrics.register(self.name)

    async def run(self) -> None:
        """Until cancelled. Errors (the database away, a bug in a renderer) are logged, never fatal."""
        delivery = self.exporter.config.delivery
        while True:
            pause = delivery.poll
            try:
                handled, failed_delay = await self.step()
                if handled and failed_delay is None:
                    continue  # more may be due right away
                await self.refresh_gauges()
                if failed_delay is not None:
                    pause = failed_delay
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("export_dispatch_failed", exporter=self.name)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the awaited result when a
            # cancellation lands in the turn the wait ends (a wake-up, a finished send), and the
            # dispatcher then polled on while shutdown waited for it forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self.wake.wait()
            self.wake.clear()

    async def step(self, now: datetime | None = None) -> tuple[int, float | None]:
        """One claim-and-send round: (rows handled, the pause to take when the send failed)."""
        config = self.exporter.config
        delivery = config.delivery
        now = now or datetime.now(UTC)
        rows = await ob.claim(self.store, self.name, self.owner, limit=config.batch_size,
                              lease=timedelta(seconds=delivery.lease), now=now)
        if not rows:
            return 0, None
        records: list[ExportRecord] = []
        good: list[ob.OutboxRow] = []
        poisoned: list[ob.Failure] = []
        for row in rows:
            try:
                records.append(from_payload(row.payload))
                good.append(row)
            except (KeyError, TypeError, ValueError) as exc:  # a payload no renderer can read: never retry
                poisoned.append(ob.Failure(row, None, f"unreadable payload: {exc}"))
        if poisoned:
            await ob.fail(self.store, poisoned, self.owner)
            self.metrics.dead_lettered.labels(self.name).inc(len(poisoned))
        if not good:
            return len(rows), None
        try:
            # The transports time out on their own; this bounds a batch of many slow sends too.
            async with asyncio.timeout(config.timeout * max(2, len(good)) + 1):
                await self.exporter.send(records, [r.id for r in good])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return len(rows), await self._failed(good, f"{type(exc).__name__}: {exc}", now)
        await ob.complete(self.store, good, self.owner)
        self.metrics.sent.labels(self.name).inc(len(good))
        return len(rows), None

    async def _failed(self, rows: list[ob.OutboxRow], error: str, now: datetime) -> float:
        delivery = self.exporter.config.delivery
        failures, delays = [], []
        # One jitter draw per batch: rows that failed together retry together, as one batch again.
        factor = random.uniform(0.8, 1.2)
        for row in rows:
            attempt = row.attempts + 1
            if attempt >= delivery.max_attempts:
                failures.append(ob.Failure(row, None, error))
                continue
            delay = backoff(attempt, delivery.backoff_initial, delivery.backoff_max, jitter=0) * factor
            delays.append(delay)
            failures.append(ob.Failure(row, now + timedelta(seconds=delay), error))
        await ob.fail(self.store, failures, self.owner)
        dead = sum(1 for f in failures if f.retry_at is None)
        self.metrics.retried.labels(self.name).inc(len(failures) - dead)
        self.metrics.dead_lettered.labels(self.name).inc(dead)
        log.warning("export_send_failed", exporter=self.name, records=len(rows), dead_lettered=dead,
                    error=error[:300])
        return min(delays) if delays else delivery.backoff_initial

    async def refresh_gauges(self) -> None:
        if time.monotonic() >= self.next_purge:  # at most every PURGE_INTERVAL: a DELETE on an index
            self.next_purge = time.monotonic() + PURGE_INTERVAL
            await self.purge()
        counts = await ob.counts(self.store)
        self.metrics.queued.labels(self.name).set(counts.get((self.name, ob.QUEUED), 0))
        self.metrics.dead.labels(self.name).set(counts.get((self.name, ob.DEAD), 0))


    async def purge(self, now: datetime | None = None) -> int:
        """Delete dead-lettered rows older than ``delivery.dead_letter_days`` (until then ``apiward
        export --requeue-dead`` can send them again): the outbox stays bounded when a receiver is gone
        for good."""
        days = self.exporter.config.delivery.dead_letter_days
        purged = await ob.purge_dead(self.store, self.name, (now or datetime.now(UTC)) - timedelta(days=days))
        if purged:
            self.metrics.purged.labels(self.name).inc(purged)
            log.warning("export_dead_letters_purged", exporter=self.name, records=purged, older_than_days=days)
        return purged


__all__ = ["Dispatcher", "backoff"]
