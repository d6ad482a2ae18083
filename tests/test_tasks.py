"""apiward/tasks.py: background loops stop at shutdown, and a loop that will not stop costs its grace
period and an error line, never a shutdown that hangs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from apiward.tasks import stop_tasks


async def _loop(ticks: list[int]) -> None:
    while True:
        ticks.append(1)
        await asyncio.sleep(0.01)


async def _deaf_loop(release: asyncio.Event) -> None:
    """Swallows its cancellations until released (what a cancellation lost inside a library does)."""
    while not release.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)


async def _failing() -> None:
    await asyncio.sleep(0)
    raise RuntimeError("the database went away")


async def test_cancels_and_waits_for_every_task() -> None:
    ticks: list[int] = []
    tasks = [asyncio.create_task(_loop(ticks), name=f"loop-{i}") for i in range(3)]
    await asyncio.sleep(0.03)
    with capture_logs() as logs:
        assert await stop_tasks([*tasks, None])
    assert all(t.cancelled() for t in tasks)
    seen = len(ticks)
    await asyncio.sleep(0.03)
    assert len(ticks) == seen  # nothing runs on after stop_tasks returned
    assert logs == []


async def test_a_task_that_ignores_its_cancellation_costs_the_grace_not_the_shutdown() -> None:
    release = asyncio.Event()
    deaf = asyncio.create_task(_deaf_loop(release), name="export-sa")
    ticks: list[int] = []
    polite = asyncio.create_task(_loop(ticks), name="fleet-view")
    await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with capture_logs() as logs:
        assert not await stop_tasks([deaf, polite], grace=0.3)
    assert 0.3 <= loop.time() - started < 3
    assert polite.cancelled() and not deaf.done()
    assert [(e["event"], e["task"], e["log_level"]) for e in logs] == [("background_task_stuck", "export-sa", "error")]
    release.set()
    async with asyncio.timeout(5):
        await deaf


async def test_a_task_that_failed_is_logged_not_raised() -> None:
    task = asyncio.create_task(_failing(), name="posture-sweep")
    await asyncio.sleep(0.01)
    with capture_logs() as logs:
        assert await stop_tasks([task])
    assert [(e["event"], e["task"], e["error"]) for e in logs] == [
        ("background_task_failed", "posture-sweep", "RuntimeError")]
    assert logs[0]["at"].startswith("test_tasks.py:")
    assert "went away" not in str(logs)  # the message could quote request data; never logged


async def test_the_caller_can_still_be_cancelled_while_it_waits() -> None:
    """``suppress(CancelledError)`` around ``await task`` would swallow this one too."""
    release = asyncio.Event()
    deaf = asyncio.create_task(_deaf_loop(release))
    stopper = asyncio.create_task(stop_tasks([deaf], grace=30))
    await asyncio.sleep(0.05)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await stopper
    release.set()
    async with asyncio.timeout(5):
        await deaf
