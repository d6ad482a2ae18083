"""A dispatcher stops when the collector shuts down, whatever else happens in the same loop turn.

The collector stops its dispatchers by cancelling their tasks and awaiting them. A cancellation that
lands in the loop turn where the dispatcher's wait ends anyway (an alert woke it, a delivery just
completed) must still stop it: a dispatcher that swallowed it would poll forever and the collector's
shutdown would hang on it (CI saw exactly that once, in the demo's export test, under Python 3.11's
``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from collector.export.config import parse
from collector.export.dispatcher import Dispatcher
from collector.export.exporters import Exporter, build
from collector.export.metrics import ExportMetrics
from collector.export.records import ExportRecord
from collector.store import Store
from collector.store import outbox_store as ob
from tests.collector.factories import alert, batch
from tests.export.conftest import SOURCE
from tests.export.helpers import json_bodies
from tests.export.receivers import http_receiver


def _exporter(url: str) -> Exporter:
    text = f"delivery: {{poll_seconds: 30}}\nexporters:\n  - {{name: sa, type: security_alert, url: '{url}'}}\n"
    (config,) = parse(text, "x.yaml", {}).exporters
    return build(config, SOURCE)


async def _stopped(task: asyncio.Task[None]) -> bool:
    """Whether the task ends within 5 s of its cancellation (it would poll forever otherwise)."""
    done, _ = await asyncio.wait({task}, timeout=5)
    if not done:
        task.cancel()  # once more, so the test itself does not leave it running
        await asyncio.wait({task}, timeout=5)
    return bool(done) and task.cancelled()


async def test_cancelled_in_the_turn_an_alert_wakes_it(sqlite_store: Store) -> None:
    async with http_receiver() as receiver:
        exporter = _exporter(receiver.url)
        dispatcher = Dispatcher(sqlite_store, exporter, ExportMetrics(CollectorRegistry()), "replica-0")
        task = asyncio.create_task(dispatcher.run())
        async with asyncio.timeout(5):  # idle: nothing queued, waiting for a wake-up or its 30 s poll
            while not dispatcher.wake._waiters:  # type: ignore[attr-defined]  # asyncio.Event's own list
                await asyncio.sleep(0.01)
        dispatcher.wake.set()  # what a new alert does ...
        task.cancel()  # ... as the collector shuts down
        assert await _stopped(task)
        await exporter.close()
    assert receiver.requests == []


class _ShutdownAsDeliveryCompletes:
    """A real exporter whose delivery completes in the loop turn the collector cancels the dispatcher."""

    def __init__(self, inner: Exporter) -> None:
        self.inner, self.config = inner, inner.config
        self.dispatcher_task: asyncio.Task[None] | None = None

    async def send(self, records: Sequence[ExportRecord], delivery_ids: Sequence[int]) -> None:
        await self.inner.send(records, delivery_ids)
        assert self.dispatcher_task is not None
        self.dispatcher_task.cancel()

    async def close(self) -> None:
        await self.inner.close()


async def test_cancelled_in_the_turn_a_delivery_completes(sqlite_store: Store) -> None:
    sqlite_store.alert_policy = type(sqlite_store.alert_policy)(routes=lambda kind, type_, severity: ["sa"])
    await sqlite_store.apply_batch(batch([], [alert(ip="10.0.0.1"), alert(ip="10.0.0.2")]))
    async with http_receiver() as receiver:
        exporter = _ShutdownAsDeliveryCompletes(_exporter(receiver.url))
        dispatcher = Dispatcher(sqlite_store, exporter, ExportMetrics(CollectorRegistry()), "replica-0")
        task = exporter.dispatcher_task = asyncio.create_task(dispatcher.run())
        assert await _stopped(task)
        await exporter.close()
    assert len(json_bodies(receiver.requests)) == 2  # delivered once, before the shutdown
    # Cancelled before it could mark the rows sent: they stay claimed under a lease and go again
    # after it (at least once), never lost.
    assert await ob.counts(sqlite_store) == {("sa", ob.QUEUED): 2}
