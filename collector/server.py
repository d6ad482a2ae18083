"""Run the collector: AppRunner + TCPSite, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import web

from apiward.logs import get_logger
from collector.app import create_app
from collector.settings import CollectorSettings

log = get_logger("collector.server")
SHUTDOWN_TIMEOUT = 10.0  # seconds in-flight requests get to finish


async def run_collector(settings: CollectorSettings, stop_event: asyncio.Event | None = None) -> None:
    """Serve until ``stop_event`` is set or the process gets SIGTERM/SIGINT."""
    stop = stop_event or asyncio.Event()
    runner = web.AppRunner(
        create_app(settings),
        access_log=None,  # one structured line per batch instead; metrics count every request
        keepalive_timeout=75.0,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    await runner.setup()  # opens and migrates the store (cleanup_ctx); failures surface here
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        await site.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread / Windows
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        log.info(
            "collector_listening",
            addresses=[f"{a[0]}:{a[1]}" for a in runner.addresses if isinstance(a, tuple)],
            insecure_dev=settings.insecure_dev,
        )
        await stop.wait()
        log.info("collector_stopping")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("collector_stopped")


def serve(settings: CollectorSettings) -> None:
    """Blocking entry point; uses uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_collector(settings))
    else:
        uvloop.run(run_collector(settings))
