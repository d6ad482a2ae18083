"""Stopping background tasks at shutdown, with a bound on the wait.

The sensor and the collector run loops as tasks (export dispatchers, the fleet view, the posture
sweep, spec sync, the sensor's window flush) and stop them by cancelling and awaiting them. Two ways
that goes wrong, both seen here: a task that swallows its cancellation (Python 3.11's
``asyncio.wait_for`` does when the cancellation lands in the turn its wait ends) keeps running and the
shutdown awaits it forever; and ``suppress(CancelledError)`` around ``await task`` also swallows the
cancellation of the coroutine doing the stopping. ``stop_tasks`` waits with ``asyncio.wait``, which
never raises the tasks' own cancellations but lets the caller's through, and gives up on a task after
``grace`` seconds with an error in the log instead of hanging.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Iterable
from typing import Any

from apiward.logs import get_logger

log = get_logger("apiward.tasks")

STOP_GRACE = 10.0  # seconds; a loop that has not ended this long after its cancellation will not


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | None], grace: float = STOP_GRACE) -> bool:
    """Cancel the tasks and wait until they have ended, at most ``grace`` seconds; False if one had not.

    A task that ended with an error is logged with its type and code location (its exception would
    otherwise go unseen); one still running after ``grace`` is logged as stuck and left behind."""
    given = [task for task in tasks if task is not None]
    for task in given:
        task.cancel()  # a no-op for one that has ended
    done, stuck = await asyncio.wait(given, timeout=grace) if given else (set(), set())
    for task in done:
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The type and where, not the message: in the sensor a message could quote request data.
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            log.error("background_task_failed", task=task.get_name(), error=type(exc).__name__,
                      at=f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else None)
    for task in stuck:
        log.error("background_task_stuck", task=task.get_name(), grace_seconds=grace,
                  detail="still running after its cancellation; shutdown goes on without it")
    return not stuck


__all__ = ["STOP_GRACE", "stop_tasks"]
