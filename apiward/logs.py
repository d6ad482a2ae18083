"""Structured JSON logs (structlog) shared by the sensor and the collector.

One JSON object per line on stdout, stable snake_case event names, ``request_id`` bound through
contextvars. Log lines never carry secrets: callers log types, hashes and counts only.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LineLogger:
    """Writes each line with one ``write()`` and flushes. ``print()`` writes the newline apart (two
    writes under ``PYTHONUNBUFFERED``), and the sensor and its proxy process share one stdout: two
    processes' lines must never interleave. Without a stream, ``sys.stdout`` is looked up per line
    (harnesses replace it)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        out = self._stream or sys.stdout
        with self._lock:
            out.write(message + "\n")
            out.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


def configure_logging(level: str = "info", component: str = "apiward", stream: Any = None) -> None:
    """Configure structlog for JSON lines. Safe to call more than once (tests, the demo)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("event"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=lambda *_: LineLogger(stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(component=component)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
