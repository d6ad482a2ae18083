"""Overhead benchmark: the sensor against direct, nginx, mitmproxy and a bare aiohttp proxy, in one run.

``python -m bench.overhead [--seconds 5] [--connections 32] [--replay-entries 100000] [--builds interpreted,compiled]``

Everything on 127.0.0.1, driven by ``wrk`` (one thread). For each target: one run at one connection
(latency), one at ``--connections`` (throughput, and the proxy process tree's CPU time per request
from /proc/<pid>/stat utime+stime). Targets: the backend directly (bench/backend.py), nginx as a
reverse proxy (upstream keep-alive), ``mitmdump --mode reverse:``, the minimal aiohttp proxy
(bench/baseline_proxy.py), the sensor in detect mode with all analysis on (shipping to a collector),
the sensor with ``--enforce``, the sensor with ``--analysis-process`` (proxy and analysis in two
processes; CPU is the sum). Then: the mirror listener's ingestion rate (mirrored requests, and
exchange records posted 50 per request), offline replay of a generated HAR (the rate the replay
reports, the whole process's rate with interpreter start-up, and CPU per exchange), the per-stage
cost of the pipeline timed directly on a fixed exchange set, and the sensor's resident memory
before and after a cardinality run (every request a new path, client IP, API key and parameter
value: bench/wrk_cardinality.lua).

Every sensor figure is taken for each build: ``interpreted`` (the source, as ``pip install`` gives
it) and ``compiled`` (the analysis modules built with mypyc in a copy of the tree, as the Docker
image ships them; the sensor processes run with that copy as their working directory). The
references (direct, nginx, mitmproxy, baseline) are measured once.

Prints a Markdown report and writes bench/results/overhead.json. Figures are ratios within this run;
absolute numbers depend on the machine (and on whatever else it is running).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.procfs import cpu_seconds, rss_mib
from bench.proxy_throughput import HERE, RESULTS, free_port, parse_wrk, wait_port

# -- /proc -------------------------------------------------------------------------------------------


# -- wrk ---------------------------------------------------------------------------------------------


def wrk(url: str, connections: int, seconds: float, script: str = "wrk_request.lua") -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(HERE / script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    result = parse_wrk(out)
    total = re.search(r"(\d+) requests in", out)
    result["requests"] = float(total.group(1)) if total else result["rps"] * seconds
    return result


def measure(
    url: str, pid: int | None, seconds: float, connections: int, script: str = "wrk_request.lua"
) -> dict[str, Any]:
    wrk(url, 4, 1.0, script)  # warm-up: pools, caches, templates
    c1 = wrk(url, 1, seconds, script)
    cpu0 = cpu_seconds(pid) if pid else 0.0
    cn = wrk(url, connections, seconds, script)
    cpu = (cpu_seconds(pid) - cpu0) if pid else 0.0
    return {
        "c1": c1,
        "cN": cn,
        "cpu_us_per_request": cpu / cn["requests"] * 1e6 if pid and cn["requests"] else None,
    }


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    if not found:
        raise RuntimeError(f"{name} not in {url}")
    return float(found.group(1))


def split_ingestion(url: str, metrics: str, seconds: float, connections: int) -> dict[str, float]:
    """Mirror ingestion with ``--analysis-process``: the listener answers at once, so its req/s is
    only half the story; the rate that counts is exchanges *analysed* per second, from the start of
    the run until the analysis process has caught up (and how many were dropped)."""
    wrk(url, 4, 1.0, "wrk_request.lua")
    done0 = metric(metrics, "apiward_sensor_exchanges_total")
    dropped0 = metric(metrics, "apiward_sensor_analysis_dropped_total")
    started = time.monotonic()
    run = wrk(url, connections, seconds, "wrk_request.lua")
    done, last = metric(metrics, "apiward_sensor_exchanges_total"), -1.0
    finished = time.monotonic()
    while done != last and time.monotonic() - finished < 60:  # until the backlog is analysed
        last = done
        time.sleep(0.5)
        done = metric(metrics, "apiward_sensor_exchanges_total")
        if done != last:
            finished = time.monotonic()
    analysed = done - done0
    return {
        "accepted_per_s": run["rps"],
        "analysed_per_s": analysed / (finished - started),
        "dropped": metric(metrics, "apiward_sensor_analysis_dropped_total") - dropped0,
        "requests": run["requests"],
    }


def analysed_share(metrics: str) -> dict[str, float]:
    """Exchanges analysed and dropped by an ``--analysis-process`` sensor so far, once its backlog
    has drained (the exchange counter stops moving)."""
    done, last = metric(metrics, "apiward_sensor_exchanges_total"), -1.0
    deadline = time.monotonic() + 60
    while done != last and time.monotonic() < deadline:
        last = done
        time.sleep(0.5)
        done = metric(metrics, "apiward_sensor_exchanges_total")
    dropped = metric(metrics, "apiward_sensor_analysis_dropped_total")
    return {"analysed": done, "dropped": dropped, "analysed_fraction": done / max(done + dropped, 1.0)}


# -- processes ---------------------------------------------------------------------------------------


class Procs:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, cmd: list[str], port: int, **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        wait_port(port, 30)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""


# -- offline parts -----------------------------------------------------------------------------------


def make_har(path: Path, entries: int) -> None:
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2ln"
    items = []
    for i in range(entries):
        items.append({
            "startedDateTime": f"2026-01-01T00:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}.{i % 10}00Z",
            "time": 3.2,
            "request": {
                "method": "GET" if i % 4 else "POST",
                "url": f"https://api.example.com/api/items/{i % 5000}?fields=name&page={i % 7}",
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": "Authorization", "value": f"Bearer {jwt}"},
                            {"name": "Content-Type", "value": "application/json"}],
                **({"postData": {"mimeType": "application/json", "text": json.dumps({"email": f"u{i}@example.com"})}}
                   if i % 4 == 0 else {}),
            },
            "response": {
                "status": 200,
                "headers": [{"name": "Content-Type", "value": "application/json"}],
                "content": {"mimeType": "application/json",
                            "text": json.dumps({"id": i, "name": "Widget", "price": 19.5, "owner": {"id": 7}})},
            },
        })
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "bench", "version": "1"},
                                        "entries": items}}))


_REPLAY_LINE = re.compile(r"in ([0-9.]+) s \(([0-9]+) exchanges/s\)")


def replay_rate(py: str, har: Path, entries: int, env: dict[str, str], tmp: str, *, cwd: Path) -> dict[str, float]:
    """Two rates: the whole process (interpreter start, imports, policies, reading the file,
    analysis) and the replay's own, as ``apiward-sensor replay`` prints it (file read, pipeline
    set-up and analysis, without the ~0.3 s of interpreter start-up and imports every run pays once)."""
    before = os.times()
    t0 = time.perf_counter()
    done = subprocess.run([py, "-m", "sensor.cli", "replay", str(har), "--quiet", "--log-level", "warning",
                           "--state-dir", f"{tmp}/replay"], env=env, check=True, timeout=900, cwd=cwd,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    own = _REPLAY_LINE.search(done.stdout)
    if own is None:
        raise BenchError(f"replay printed no rate: {done.stdout[:300]!r}")
    return {"exchanges": entries, "seconds": wall, "exchanges_per_s": entries / wall,
            "cpu_us_per_exchange": cpu / entries * 1e6,
            "replay_seconds": float(own.group(1)), "replay_exchanges_per_s": float(own.group(2)),
            "startup_seconds": wall - float(own.group(1))}


# -- the two builds ----------------------------------------------------------------------------------

REPO = HERE.parent
BUILDS = ("interpreted", "compiled")


class BenchError(Exception):
    """The benchmark cannot run as asked; the message says why."""


def build_compiled_tree(py: str, tmp: str) -> Path:
    """A copy of the packages with the analysis compiled in place (``APIWARD_COMPILE=1``, setup.py),
    the build the Docker image ships. Processes started with this directory as their working
    directory import it first; the repository itself stays interpreted."""
    tree = Path(tmp) / "compiled"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "results")
    for name in ("sensor", "apiward", "collector", "policies", "bench"):
        shutil.copytree(REPO / name, tree / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    done = subprocess.run([py, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=tree, capture_output=True,
                          text=True, timeout=1800, env={**os.environ, "APIWARD_COMPILE": "1"}, check=False)
    if done.returncode != 0:
        raise BenchError(f"the compiled build failed (needs a C compiler and mypy):\n{done.stderr[-3000:]}")
    if not analysis_compiled_in(py, tree):
        raise BenchError("the compiled build finished but its extensions do not load")
    return tree


def analysis_compiled_in(py: str, cwd: Path) -> bool:
    probe = "import sys, sensor; sys.exit(0 if sensor.analysis_compiled() else 3)"
    return subprocess.run([py, "-c", probe], cwd=cwd, timeout=60, check=False).returncode == 0


def stage_costs_in(py: str, cwd: Path) -> dict[str, float]:
    """``stage_costs`` in a fresh interpreter of one build."""
    code = "import json, sys; from bench.overhead import stage_costs; json.dump(stage_costs(), sys.stdout)"
    out = subprocess.run([py, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600, check=True).stdout
    costs: dict[str, float] = json.loads(out)
    return costs


def sensor_label(build: str, what: str) -> str:
    return f"sensor ({what})" if build == "interpreted" else f"sensor, compiled ({what})"


ONE = "detect, one process"
ENFORCE_ONE = "enforce, one process"
ENFORCE_SPLIT = "enforce, --analysis-process: the default on 2+ CPUs"
SPLIT = "detect, --analysis-process: the default on 2+ CPUs"


def stage_costs(rounds: int = 2000) -> dict[str, float]:
    """Microseconds per exchange for each pipeline stage, timed directly on a fixed exchange set."""
    from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

    from apiward.logs import configure_logging
    from sensor.config import SensorConfig
    from sensor.evidence import PrincipalHasher, authentication, client_info, is_trusted_peer
    from sensor.exchange import Exchange
    from sensor.pipeline import Pipeline
    from sensor.summary import SummaryAggregator
    from sensor.walk import WalkStats, exchange_leaves

    configure_logging("warning", component="sensor", stream=sys.stderr)
    cfg = SensorConfig(upstream="http://127.0.0.1:1", api_name="bench", trusted_proxies=["127.0.0.1/32"])
    pipeline = Pipeline(cfg, SummaryAggregator(60), PrincipalHasher(b"k" * 32))
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2ln"
    body = json.dumps({"id": 1, "name": "Widget", "price": 19.5, "email": "alice@example.com",
                       "owner": {"id": 7, "phone": "+1 202 555 0143"}, "description": "x" * 300}).encode()
    now = time.time()
    exchanges = [
        Exchange(
            request_id=f"r{i}", method="GET" if i % 4 else "POST", path=f"/api/items/{i % 500}",
            query_string=f"fields=name,price&page={i % 7}",
            request_headers=CIMultiDictProxy(CIMultiDict({
                "Authorization": f"Bearer {jwt}", "X-Forwarded-For": f"81.2.69.{i % 250}",
                "Content-Type": "application/json", "Accept": "application/json"})),
            peer_ip="127.0.0.1", request_body=body if i % 4 == 0 else b"",
            request_body_size=len(body) if i % 4 == 0 else 0,
            status=200, response_headers=CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"})),
            response_body=body, response_body_size=len(body), started_at=now + i * 0.001,
        )
        for i in range(rounds)
    ]
    for ex in exchanges[:200]:
        pipeline.submit(ex)  # warm caches and templates, as in a running sensor
    leaves = [exchange_leaves(ex, pipeline.classifier.limits, WalkStats()) for ex in exchanges]
    observations = [pipeline.analyse(ex)[0] for ex in exchanges]

    def timed(fn: Callable[[int], object]) -> float:
        t0 = time.perf_counter()
        for i in range(rounds):
            fn(i)
        return (time.perf_counter() - t0) / rounds * 1e6

    def evidence(i: int) -> None:
        ex = exchanges[i]
        query: MultiDict[str] = MultiDict((lf.path, lf.value) for lf in leaves[i] if lf.location == "query")
        trusted = is_trusted_peer(ex.peer_ip, pipeline.evidence_cfg)
        authentication(ex.request_headers, query, pipeline.evidence_cfg, pipeline.hasher, now=now, peer_trusted=trusted)
        client_info(ex.peer_ip, ex.request_headers, pipeline.evidence_cfg, None)

    costs = {
        "walk (body/query/header leaves)": timed(lambda i: exchange_leaves(exchanges[i], pipeline.classifier.limits,
                                                                           WalkStats())),
        "evidence (auth + client)": timed(evidence),
        "routing": timed(lambda i: pipeline.router.route(exchanges[i].method, exchanges[i].path)),
        "classification": timed(lambda i: list(pipeline.classifier.classify_leaves(leaves[i], status_class="2xx"))),
        "signatures": timed(lambda i: pipeline.request_verdict(exchanges[i], leaves[i])),
        "summary (aggregate)": timed(lambda i: pipeline.aggregator.add(observations[i])),
        "behaviour (observe)": timed(lambda i: pipeline.behaviour.observe(observations[i], exchanges[i], leaves[i])),
        "whole pipeline (submit)": timed(lambda i: pipeline.submit(exchanges[i])),
    }
    return costs


# -- main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--replay-entries", type=int, default=100_000,
                        help="HAR entries to replay (a capture of this size pays the ~0.3 s start-up once)")
    parser.add_argument("--skip", default="", help="comma-separated targets to skip (nginx,mitmproxy,...)")
    parser.add_argument("--builds", default=",".join(BUILDS),
                        help="sensor builds to measure: interpreted, compiled (mypyc, as in the image) or both")
    args = parser.parse_args(argv)
    builds = [b.strip() for b in args.builds.split(",") if b.strip()]
    if not builds or any(b not in BUILDS for b in builds):
        print(f"bench: error: --builds takes {' and/or '.join(BUILDS)}, not {args.builds!r}", file=sys.stderr)
        return 2
    for tool in ("wrk",):
        if not shutil.which(tool):
            print(f"bench: error: {tool} is not installed", file=sys.stderr)
            return 2
    py = sys.executable
    if "interpreted" in builds and analysis_compiled_in(py, REPO):
        print("bench: error: compiled extensions lie in the source tree (make clean-compiled): the interpreted "
              "build cannot be measured from it", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="apiward-overhead-")
    try:
        trees = {"interpreted": REPO}
        if "compiled" in builds:
            trees["compiled"] = build_compiled_tree(py, tmp)
            print("built the compiled analysis", file=sys.stderr)
        report = run(args, {b: trees[b] for b in builds}, tmp)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps(report, indent=2))
    print(render(report))
    return 0


def run(args: argparse.Namespace, trees: dict[str, Path], tmp: str) -> dict[str, Any]:
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    py = sys.executable
    bin_dir = Path(py).parent
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    mitmdump = str(bin_dir / "mitmdump")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = Procs(env)
    results: dict[str, dict[str, Any]] = {}
    per_build: dict[str, dict[str, Any]] = {b: {} for b in trees}
    s, c = args.seconds, args.connections
    try:
        backend_port, collector_port = free_port(), free_port()
        procs.spawn([py, "-m", "bench.backend", str(backend_port)], backend_port)
        backend = f"http://127.0.0.1:{backend_port}"
        procs.spawn([str(bin_dir / "apiward"), "serve", "--insecure-dev", "--listen",
                     f"127.0.0.1:{collector_port}", "--database", f"sqlite:///{tmp}/bench.db",
                     "--log-level", "warning"], collector_port)
        collector = f"http://127.0.0.1:{collector_port}"
        backend_pid = procs.procs[0].pid

        def sensor_cmd(port: int, *more: str) -> list[str]:
            return [py, "-m", "sensor.cli", "--upstream", backend, "--listen", f"127.0.0.1:{port}",
                    "--collector", collector, "--window", "5", "--trusted-proxies", "127.0.0.1/32",
                    "--state-dir", f"{tmp}/sensor-{port}", "--log-level", "warning", *more]

        def mirror_cmd(port: int, *more: str) -> list[str]:
            return [py, "-m", "sensor.cli", "--mode", "mirror", "--listen", f"127.0.0.1:{port}",
                    "--collector", collector, "--window", "5", "--state-dir", f"{tmp}/mirror-{port}",
                    "--log-level", "warning", "--api-name", "mirror", *more]

        # the references, once
        ports = {name: free_port() for name in ("nginx", "mitm", "baseline")}
        references: list[tuple[str, Callable[[], subprocess.Popen[bytes] | None], int]] = [
            ("direct", lambda: None, backend_port),
        ]
        if "nginx" not in skip and os.path.exists(nginx):
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, backend=backend_port, port=ports["nginx"]))
            references.append(("nginx", lambda: procs.spawn([nginx, "-p", tmp, "-c", str(conf)], ports["nginx"]),
                               ports["nginx"]))
        if "mitmproxy" not in skip and os.path.exists(mitmdump):
            references.append(("mitmproxy (reverse)", lambda: procs.spawn(
                [mitmdump, "-q", "--listen-host", "127.0.0.1", "-p", str(ports["mitm"]), "--mode",
                 f"reverse:{backend}", "--set", f"confdir={tmp}/mitm"], ports["mitm"]), ports["mitm"]))
        references.append(("baseline aiohttp proxy", lambda: procs.spawn(
            [py, "-m", "bench.baseline_proxy", str(ports["baseline"]), backend], ports["baseline"]),
            ports["baseline"]))
        for name, start, port in references:
            proc = start()
            pid = proc.pid if proc is not None else backend_pid
            results[name] = measure(f"http://127.0.0.1:{port}", pid, s, c)
            results[name]["rss_mib"] = rss_mib(pid)
            if proc is not None:
                procs.stop(proc)
            print(f"measured {name}", file=sys.stderr)

        # the sensor, per build: each runs with its tree as the working directory
        for build, tree in trees.items():
            extra = per_build[build]
            port, admin = free_port(), free_port()
            rows: list[tuple[str, list[str]]] = [
                # One process (--no-analysis-process); the default on a host with two CPUs or more is
                # the --analysis-process row.
                (ONE, sensor_cmd(port, "--no-analysis-process")),
                (ENFORCE_ONE, sensor_cmd(port, "--enforce", "--no-analysis-process")),
                (ENFORCE_SPLIT, sensor_cmd(port, "--enforce", "--analysis-process")),
                (SPLIT, sensor_cmd(port, "--analysis-process", "--admin-listen", f"127.0.0.1:{admin}")),
            ]
            for what, cmd in rows:
                name = sensor_label(build, what)
                proc = procs.spawn(cmd, port, cwd=tree)
                results[name] = measure(f"http://127.0.0.1:{port}", proc.pid, s, c)
                results[name]["rss_mib"] = rss_mib(proc.pid)
                if what == ONE:
                    before = rss_mib(proc.pid)
                    card = wrk(f"http://127.0.0.1:{port}", c, max(s, 10.0), "wrk_cardinality.lua")
                    extra["cardinality"] = {"requests": card["requests"], "rss_before_mib": before,
                                            "rss_after_mib": rss_mib(proc.pid), "rps": card["rps"]}
                if what == SPLIT:
                    # Its proxy answers before the analysis process has looked: count what was analysed
                    # (after the backlog drains) and what was dropped, so req/s is not read alone.
                    extra["inline_split"] = analysed_share(f"http://127.0.0.1:{admin}/metrics")
                procs.stop(proc)
                print(f"measured {name}", file=sys.stderr)

            mport = free_port()
            mirror = procs.spawn(mirror_cmd(mport, "--no-analysis-process"), mport, cwd=tree)
            murl = f"http://127.0.0.1:{mport}"
            mirrored = measure(murl, mirror.pid, s, c)
            records = measure(murl, mirror.pid, s, c, "wrk_records.lua")
            extra["mirror"] = {
                "mirrored_requests_per_s": mirrored["cN"]["rps"],
                "mirrored_cpu_us_per_exchange": mirrored["cpu_us_per_request"],
                "record_posts_per_s": records["cN"]["rps"],
                "records_per_s": records["cN"]["rps"] * 50,
                "records_cpu_us_per_exchange": (records["cpu_us_per_request"] or 0) / 50,
                "non_2xx": mirrored["cN"]["non_2xx"] + records["cN"]["non_2xx"],
            }
            procs.stop(mirror)
            sport, sadmin = free_port(), free_port()
            split_mirror = procs.spawn(mirror_cmd(sport, "--analysis-process", "--admin-listen",
                                                  f"127.0.0.1:{sadmin}"), sport, cwd=tree)
            extra["mirror_split"] = split_ingestion(f"http://127.0.0.1:{sport}", f"http://127.0.0.1:{sadmin}/metrics",
                                                    s, c)
            procs.stop(split_mirror)
            print(f"measured mirror ({build})", file=sys.stderr)
    finally:
        procs.stop_all()

    har = Path(tmp) / "bench.har"
    make_har(har, args.replay_entries)
    for build, tree in trees.items():
        per_build[build]["replay"] = replay_rate(py, har, args.replay_entries, env, f"{tmp}/{build}", cwd=tree)
        per_build[build]["stage_us"] = stage_costs_in(py, tree)
        print(f"measured replay and stages ({build})", file=sys.stderr)
    return {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "seconds": s, "connections": c, "targets": results, "builds": per_build}


def render(r: dict[str, Any]) -> str:
    t = r["targets"]
    c = r["connections"]
    direct, base = t["direct"], t.get("baseline aiohttp proxy")
    mitm = t.get("mitmproxy (reverse)")
    lines = [
        f"| target | req/s (c{c}) | x direct | x baseline | p50 ms (c1) | p99 ms (c1) | p50 ms (c{c}) | p99 ms (c{c}) "
        "| CPU µs/req | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in t.items():
        rps = m["cN"]["rps"]
        vs_base = f"{rps / base['cN']['rps']:.2f}" if base else "-"
        cpu = m["cpu_us_per_request"]
        cpu_text = "(backend)" if name == "direct" else (f"{cpu:,.0f}" if cpu is not None else "-")
        lines.append(
            f"| {name} | {rps:,.0f} | {rps / direct['cN']['rps']:.2f} | {vs_base} | {m['c1']['p50_ms']:.3f} | "
            f"{m['c1']['p99_ms']:.3f} | {m['cN']['p50_ms']:.2f} | {m['cN']['p99_ms']:.2f} | {cpu_text} | "
            f"{int(m['cN']['non_2xx'] + m['c1']['non_2xx'])} |"
        )
    builds: dict[str, dict[str, Any]] = r.get("builds", {})
    for build, extra in builds.items():
        lines += ["", f"**{build}**" + (" (mypyc, APIWARD_COMPILE=1: the Docker image)" if build == "compiled" else "")]
        det, split = t.get(sensor_label(build, ONE)), t.get(sensor_label(build, SPLIT))
        if det:
            lines.append(f"- one process: added median latency at one connection over direct "
                         f"{det['c1']['p50_ms'] - direct['c1']['p50_ms']:.3f} ms (goal <= 0.6), p99 "
                         f"{det['c1']['p99_ms'] - direct['c1']['p99_ms']:.3f} ms (goal <= 2)"
                         + (f"; / baseline req/s {det['cN']['rps'] / base['cN']['rps']:.2f} (goal >= 0.75)"
                            if base else "")
                         + (f"; / mitmproxy req/s {det['cN']['rps'] / mitm['cN']['rps']:.2f} (goal >= 6)"
                            if mitm else ""))
        if split:
            lines.append(f"- --analysis-process (CPU = both processes): added p50 at one connection "
                         f"{split['c1']['p50_ms'] - direct['c1']['p50_ms']:.3f} ms, p99 "
                         f"{split['c1']['p99_ms'] - direct['c1']['p99_ms']:.3f} ms"
                         + (f"; / baseline req/s {split['cN']['rps'] / base['cN']['rps']:.2f}" if base else "")
                         + (f"; / mitmproxy req/s {split['cN']['rps'] / mitm['cN']['rps']:.2f}" if mitm else ""))
        share = extra.get("inline_split")
        if share:
            lines.append(f"- --analysis-process, exchanges analysed: {share['analysed']:,.0f}, dropped because "
                         f"analysis fell behind: {share['dropped']:,.0f} ({share['analysed_fraction']:.1%} analysed)")
        m = extra.get("mirror")
        if m:
            lines.append(f"- mirror ingestion, one process: {m['mirrored_requests_per_s']:,.0f} mirrored requests/s "
                         f"(goal >= 5,000/s); {m['records_per_s']:,.0f} exchange records/s (50 per POST)")
        ms = extra.get("mirror_split")
        if ms:
            lines.append(f"- mirror ingestion with --analysis-process: {ms['accepted_per_s']:,.0f} mirrored "
                         f"requests/s accepted, {ms['analysed_per_s']:,.0f}/s analysed, {ms['dropped']:,.0f} "
                         "dropped (counted)")
        rp = extra.get("replay")
        if rp:
            lines.append(f"- offline replay: {rp['replay_exchanges_per_s']:,.0f} exchanges/s as the replay reports it "
                         f"(goal >= 20,000/s); {rp['exchanges_per_s']:,.0f}/s over the whole process for "
                         f"{rp['exchanges']:,} entries ({rp['startup_seconds']:.2f} s of interpreter start-up and "
                         f"imports), {rp['cpu_us_per_exchange']:,.0f} µs CPU per exchange")
        card = extra.get("cardinality")
        if card:
            lines.append(f"- RSS under cardinality load ({card['requests']:,.0f} requests, each a new path, IP, "
                         f"key and value): {card['rss_before_mib']:.1f} -> {card['rss_after_mib']:.1f} MiB")
    stages = {b: e.get("stage_us", {}) for b, e in builds.items() if e.get("stage_us")}
    if stages:
        names = list(next(iter(stages.values())))
        lines += ["", "| pipeline stage | " + " | ".join(f"µs per exchange ({b})" for b in stages) + " |",
                  "|---|" + "---:|" * len(stages)]
        for stage in names:
            lines.append(f"| {stage} | " + " | ".join(f"{costs.get(stage, 0.0):.1f}" for costs in stages.values())
                         + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
