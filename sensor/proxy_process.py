"""The capture half of ``--analysis-process`` (see ``sensor/offload.py``); started by the sensor, not
by hand: ``python -m sensor.proxy_process LISTEN_FD CHANNEL_FD`` with the configuration as JSON on
stdin.

It serves the inline proxy (or, in mirror mode, the mirror listener) on the inherited listening
socket and writes every finished exchange to the channel. In enforce mode it keeps its own signature
engine for the request-phase verdict (the verdict must be given before anything goes upstream, so it
cannot wait for the other process).
SIGTERM, or the parent going away (the channel closes), stops it gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys

from apiward.logs import configure_logging, get_logger
from sensor.config import SensorConfig
from sensor.mirror import MirrorCounters, start_mirror
from sensor.offload import COUNTERS_INTERVAL, ChannelSink, FrameReader, counters_dict, inherit_socket
from sensor.proxy import ProxyCounters, RequestGate, start_proxy

log = get_logger("sensor.proxy_process")


def _enforce_gate(cfg: SensorConfig, counters: ProxyCounters) -> RequestGate:
    from sensor.app import enforce_gate
    from sensor.evidence import PrincipalHasher
    from sensor.pipeline import Pipeline
    from sensor.state import load_principal_secret
    from sensor.summary import SummaryAggregator

    secret = load_principal_secret(cfg)
    pipeline = Pipeline(cfg, SummaryAggregator(cfg.window), PrincipalHasher(secret), secret=secret)
    return enforce_gate(pipeline, counters, cfg)


async def serve(cfg: SensorConfig, listen_fd: int, channel_fd: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The parent never writes; EOF on the channel means it is gone.
    transport, reader = await loop.create_unix_connection(
        lambda: FrameReader(lambda kind, data: None), sock=inherit_socket(channel_fd)
    )
    reader.closed.add_done_callback(lambda _: stop.set())
    sink = ChannelSink(transport)
    listen = inherit_socket(listen_fd)
    counters: ProxyCounters | MirrorCounters
    if cfg.mode == "mirror":
        counters = MirrorCounters()
        runner = await start_mirror(cfg, sink, "", 0, counters, sock=listen)
    else:
        counters = ProxyCounters()
        gate = _enforce_gate(cfg, counters) if cfg.enforce else None
        runner = await start_proxy(cfg, sink, "", 0, counters, request_gate=gate, sock=listen)

    def snapshot() -> dict[str, int]:
        return {**counters_dict(counters), "analysis_dropped": sink.dropped}

    sink.send("r", None)
    sink.send("c", snapshot())
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COUNTERS_INTERVAL):
                    await stop.wait()
            sink.send("c", snapshot())
    finally:
        await runner.cleanup()  # stops accepting; in-flight requests finish and submit
        sink.flush()
        sink.send("c", snapshot())
        transport.close()  # flushes the write buffer first
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10.0):
                await reader.closed


def main() -> int:
    listen_fd, channel_fd = int(sys.argv[1]), int(sys.argv[2])
    cfg = SensorConfig(**json.loads(sys.stdin.read())).validate()
    configure_logging(cfg.log_level, component="sensor-proxy")
    import uvloop

    uvloop.run(serve(cfg, listen_fd, channel_fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
