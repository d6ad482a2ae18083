"""``apiward-sensor``: run the sensor (inline or mirror).

Every error is one clear line on stderr and a non-zero exit; logs go to stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

from apiward.console import guard_stdout
from apiward.logs import configure_logging
from sensor import __version__, analysis_compiled
from sensor.config import ConfigError, SensorConfig, load_config


def _build() -> str:
    return "analysis compiled with mypyc" if analysis_compiled() else "interpreted"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="apiward-sensor",
        description="apiward sensor: an inline reverse proxy or mirror receiver that summarises API "
        "traffic and ships it to the collector. Flags win over --config, which wins over APIWARD_* "
        "environment variables.",
        epilog="To analyse a capture instead: apiward-sensor replay FILE.har|FILE.flows (see replay --help).",
    )
    p.add_argument("--version", action="version", version=f"apiward-sensor {__version__} ({_build()})")
    p.add_argument("--upstream", help="backend base URL (inline mode), e.g. http://127.0.0.1:9000")
    p.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:8080)")
    p.add_argument("--collector", help="collector base URL; without it summaries are only logged")
    p.add_argument("--mode", choices=["inline", "mirror"], help="inline proxy (default) or mirror receiver")
    p.add_argument("--enforce", action="store_const", const=True, help="block requests (enforce mode)")
    p.add_argument("--policies", help="policy directory (default: the bundled policies)")
    p.add_argument("--paranoia", type=int, choices=[1, 2, 3, 4], help="signature paranoia level (default 2)")
    p.add_argument("--config", help="YAML configuration file")
    p.add_argument("--window", type=float, help="summary window in seconds (default 60)")
    p.add_argument("--trusted-proxies", dest="trusted_proxies", help="CIDR,... whose X-Forwarded-For is believed")
    p.add_argument("--internal-cidrs", dest="internal_cidrs", help="CIDR,... that count as internal clients")
    p.add_argument("--api-name", dest="api_name", help="API collection name (default: the upstream host)")
    p.add_argument("--spec", dest="specs", action="append", help="OpenAPI file for routing (repeatable)")
    p.add_argument("--state-dir", dest="state_dir", help="directory for the spool and generated keys")
    p.add_argument("--admin-listen", dest="admin_listen", help="HOST:PORT for /healthz, /readyz, /metrics")
    p.add_argument("--inspect-bytes", dest="inspect_bytes", type=int, help="body prefix analysed (64 KiB)")
    p.add_argument("--max-body-bytes", dest="max_body_bytes", type=int, help="refuse larger request bodies (413)")
    p.add_argument("--sensor-name", dest="sensor_name", help="name shown in the collector")
    p.add_argument(
        "--analysis-process",
        dest="analysis_process",
        action="store_const",
        const=True,
        help="proxy (or mirror listener) in a child process, analysis in this one, using a second CPU "
        "(default: auto, on when the sensor may use two CPUs or more)",
    )
    p.add_argument(
        "--no-analysis-process",
        dest="analysis_process",
        action="store_const",
        const=False,
        help="proxy and analysis in one process, even with CPUs to spare",
    )
    p.add_argument(
        "--no-fast-path",
        dest="fast_path",
        action="store_const",
        const=False,
        help="proxy every request through aiohttp (no protocol-level fast path for plain API requests)",
    )
    p.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    return p


async def run(cfg: SensorConfig, stop: asyncio.Event | None = None) -> None:
    from sensor.app import SensorRuntime

    runtime = SensorRuntime(cfg)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    try:
        await stop.wait()
    finally:
        await runtime.stop()


def main(argv: Sequence[str] | None = None) -> int:
    # "apiward-sensor replay x.har | head": stop quietly when the reader goes away, as Unix tools do
    return guard_stdout(lambda: _main(sys.argv[1:] if argv is None else list(argv)))


def _main(argv: list[str]) -> int:
    if argv[:1] == ["replay"]:
        # A subcommand without turning the sensor's own flags into a subparser (they stay as they are).
        from sensor import replay

        return replay.main(argv[1:])
    args = build_parser().parse_args(argv)
    flags: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        cfg = load_config(flags, args.config)
    except ConfigError as exc:
        print(f"apiward-sensor: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(cfg.log_level, component="sensor")
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        runner = asyncio.run
    try:
        runner(run(cfg))
    except ConfigError as exc:
        print(f"apiward-sensor: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"apiward-sensor: error: cannot listen on {cfg.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
