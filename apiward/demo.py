"""``apiward demo``: the whole loop on one machine, in one process.

Starts the collector (SQLite), the demo API, the sensor in front of it (inline, shipping to the
collector), drives realistic traffic through the sensor, then prints what the collector learned:
the inventory, the endpoints and the alerts. Without ``--duration`` everything keeps serving until
Ctrl-C so the API (and the dashboard, when present) can be explored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from apiward.demo_api import DEMO_SPEC, build_demo_api
from apiward.demo_traffic import TrafficStats, run_traffic
from apiward.logs import configure_logging
from collector.app import create_app
from collector.render import data_types_summary, short_time, table
from collector.settings import CollectorSettings, Role, Token
from sensor.config import SensorConfig, parse_listen

DEFAULT_TRAFFIC_SECONDS = 20.0


def add_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run collector + demo API + sensor + traffic, then print the inventory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, help="seconds of traffic, then print and exit (default: "
                   f"{DEFAULT_TRAFFIC_SECONDS:.0f}s of traffic, then keep serving until Ctrl-C)")
    p.add_argument("--collector-listen", default="127.0.0.1:8000", help="collector HOST:PORT (default %(default)s)")
    p.add_argument("--sensor-listen", default="127.0.0.1:8080", help="sensor HOST:PORT (default %(default)s)")
    p.add_argument("--api-listen", default="127.0.0.1:9000", help="demo API HOST:PORT (default %(default)s)")
    p.add_argument("--window", type=float, default=5.0, help="sensor summary window, seconds (default %(default)s)")
    p.add_argument("--rate", type=float, default=60.0, help="requests per second of traffic (default %(default)s)")
    p.add_argument("--data-dir", help="where the SQLite database and sensor state go (default: a temp dir)")
    p.set_defaults(func=main)


class Demo:
    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.data_dir = data_dir
        self.tokens = {role: secrets.token_urlsafe(24) for role in ("ingest", "read", "admin")}
        self.runners: list[web.AppRunner] = []
        self.runtime: Any = None
        self.collector_url = ""
        self.sensor_url = ""

    async def start(self) -> None:
        from sensor.app import SensorRuntime

        c_host, c_port = parse_listen(self.args.collector_listen)
        settings = CollectorSettings(
            host=c_host,
            port=c_port,
            database_url=f"sqlite:///{self.data_dir / 'apiward.db'}",
            tokens=[Token(Role(role), secret, f"demo-{role}") for role, secret in self.tokens.items()],
            log_level="warning",
        ).validate()
        c_port = await self._serve(create_app(settings), c_host, c_port)
        self.collector_url = f"http://{c_host}:{c_port}"
        await self.import_spec()

        a_host, a_port = parse_listen(self.args.api_listen)
        a_port = await self._serve(build_demo_api(), a_host, a_port)

        cfg = SensorConfig(
            upstream=f"http://{a_host}:{a_port}",
            listen=self.args.sensor_listen,
            collector=self.collector_url,
            ingest_token=self.tokens["ingest"],
            window=self.args.window,
            trusted_proxies=["127.0.0.1/32", "::1/128"],
            api_name="shop",
            state_dir=str(self.data_dir / "sensor"),
            sensor_name="demo-sensor",
            log_level="warning",
            spec_sync_interval=5.0,
        ).validate()
        self.runtime = SensorRuntime(cfg)
        await self.runtime.start()
        await self.wait_for_spec_templates()
        s_host, _ = parse_listen(cfg.listen)
        self.sensor_url = f"http://{s_host}:{self.runtime.listen_port}"

    async def import_spec(self) -> None:
        """Publish the shop's OpenAPI document, as an operator would with ``apiward import-spec``."""
        headers = {"Authorization": f"Bearer {self.tokens['admin']}"}
        async with (
            aiohttp.ClientSession(self.collector_url, headers=headers) as session,
            session.post("/api/v1/specs", params={"api": "shop", "source": "demo-shop.json"}, json=DEMO_SPEC) as resp,
        ):
            if resp.status != 201:
                raise RuntimeError(f"spec import failed: {resp.status} {await resp.text()}")

    async def wait_for_spec_templates(self, seconds: float = 10.0) -> None:
        """The sensor pulls the spec's templates at start; wait so the first requests get named."""
        deadline = time.monotonic() + seconds
        sync = self.runtime.spec_sync
        while sync is not None and not sync.loaded_operations and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens['read']}"}
        async with (
            aiohttp.ClientSession(self.collector_url, headers=headers) as session,
            session.post(path, json=body) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self.runners.append(runner)
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
        for runner in reversed(self.runners):
            await runner.cleanup()

    async def settle(self, wait_seconds: float = 15.0) -> bool:
        """Close the current window and wait until the collector has every batch."""
        self.runtime.flush(force=True)
        return bool(await self.runtime.shipper.flush(wait_seconds))

    async def fetch(self, path: str, params: dict[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens['read']}"}
        async with (
            aiohttp.ClientSession(self.collector_url, headers=headers) as session,
            session.get(path, params=params) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()

    async def fetch_all(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            page = await self.fetch(path, params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items


def print_posture(
    findings: list[dict[str, Any]], recommendations: list[dict[str, Any]], queries: list[dict[str, Any]]
) -> None:
    print("\n== Findings")
    if not findings:
        print("(none)")
    else:
        print(table(
            ["severity", "type", "endpoint", "status"],
            [[f["severity"], f["type"], f"{f['endpoint']['method']} {f['endpoint']['path']}", f["status"]]
             for f in findings],
        ))
    print("\n== Recommendations")
    print(table(
        ["status", "severity", "recommendation", "affected endpoints"],
        [[r["status"], r["severity"], r["title"], len(r.get("affected_endpoints") or [])] for r in recommendations],
    ))
    print("\n== Explorer templates")
    for answer in queries:
        hits = ", ".join(f"{e['method']} {e['path']}" for e in answer["items"]) or "(no endpoints)"
        print(f"- {answer['title']}: {hits}")


def print_report(inventory: dict[str, Any], endpoints: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
    counts = inventory["counts"]
    print("\n== Inventory")
    print(table(["", "count"], [[k.replace("_", " "), v] for k, v in counts.items()]))
    print("\n== Endpoints")
    rows = [
        [
            e["name"],
            f"{e['method']} {e['path']}",
            short_time(e["last_called"]),
            "yes" if e["inactive_30d"] else "no",
            e["authentication"],
            ",".join(f"{k}:{v}" for k, v in sorted(e["auth_schemes"].items())),
            short_time(e["external_traffic_observed"]) if e["external_traffic_observed"] else "no",
            data_types_summary(e["data_classification"]),
            e["requests_30d"],
        ]
        for e in sorted(endpoints, key=lambda e: (e["path"], e["method"]))
    ]
    print(table(
        ["name", "endpoint", "last called (UTC)", "30d unused", "authentication", "auth schemes",
         "external traffic observed", "data classification", "requests"],
        rows,
    ))
    print("\n== Alerts")
    if not alerts:
        print("(none)")
    else:
        print(table(
            ["severity", "type", "endpoint", "client", "count", "last seen"],
            [[a["severity"], a["type"], f"{a['endpoint']['method']} {a['endpoint']['path']}",
              a["client"].get("ip") or "-", a["count"], short_time(a["last_seen"])] for a in alerts],
        ))


async def run_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="apiward-demo-") as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        demo = Demo(args, data_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await demo.start()
        except OSError as exc:
            await demo.stop()
            print(f"apiward demo: error: cannot listen: {exc.strerror or exc} (use --*-listen to pick other ports)",
                  file=sys.stderr)
            return 1
        try:
            print(f"collector  {demo.collector_url}   (read token: {demo.tokens['read']})\n"
                  f"dashboard  {demo.collector_url}/   (log in with the read token)")
            print(f"demo API   {demo.runtime.cfg.upstream}")
            print(f"sensor     {demo.sensor_url}  -> demo API, window {args.window:g}s")
            seconds = args.duration if args.duration is not None else DEFAULT_TRAFFIC_SECONDS
            print(f"sending traffic for {seconds:g}s ...", flush=True)
            started = time.monotonic()

            def progress(stats: TrafficStats) -> None:
                statuses = " ".join(f"{k}:{v}" for k, v in sorted(stats.by_status.items()))
                print(f"  {time.monotonic() - started:5.1f}s  sent {stats.sent:5d}  {statuses}", flush=True)

            stats = await run_traffic(demo.sensor_url, seconds, rate=args.rate, on_progress=progress)
            print(f"traffic done: {stats.sent} requests, {stats.failed} failed; waiting for the collector ...",
                  flush=True)
            if not await demo.settle():
                print("warning: some batches are still on their way to the collector", file=sys.stderr)
            inventory = await demo.fetch("/api/v1/inventory")
            endpoints = await demo.fetch_all("/api/v1/endpoints")
            alerts = await demo.fetch_all("/api/v1/alerts")
            print_report(inventory, endpoints, alerts)
            findings = await demo.fetch_all("/api/v1/findings")
            recommendations = (await demo.fetch("/api/v1/recommendations"))["items"]
            queries = []
            for template in (await demo.fetch("/api/v1/query/templates"))["items"][:3]:
                answer = await demo.post("/api/v1/query", {"template": template["id"]})
                queries.append({"title": template["title"], "items": answer["items"]})
            print_posture(findings, recommendations, queries)
            if args.duration is None:
                print(f"\nserving: collector API at {demo.collector_url}/api/v1 — Ctrl-C to stop", flush=True)
                await stop.wait()
        finally:
            await demo.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    configure_logging("warning", component="demo", stream=sys.stderr)
    try:
        import uvloop

        return int(uvloop.run(run_demo(args)))
    except ImportError:  # pragma: no cover
        return asyncio.run(run_demo(args))
