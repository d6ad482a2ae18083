"""Proxy overhead benchmark: direct vs the baseline aiohttp proxy vs the sensor, in one run.

``python -m bench.proxy_throughput [--seconds 8] [--connections 32]``

Starts a backend, the baseline proxy (bench/baseline_proxy.py), a collector (SQLite) and the sensor
twice (detect mode, all analysis on, shipping to the collector): in one process
(``--no-analysis-process``), and with ``--analysis-process`` (proxy and analysis in two processes,
the default on a host with two CPUs or more; its CPU is the sum of both), then
drives each target with ``wrk`` on loopback: once at one connection (latency) and once at
``--connections`` (throughput). Prints a Markdown table and writes bench/results/proxy_throughput.json.
Every figure is a ratio to a baseline measured in the same run; absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procfs import cpu_seconds

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def parse_wrk(output: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.M))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)

    def ms(value: str) -> float:
        num, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
        return float(num) * UNITS[unit]

    if not rps or "50" not in lat:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": ms(lat["50"]),
        "p99_ms": ms(lat["99"]),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "requests": float(total.group(1)) if total else 0.0,
        "socket_errors": float(sum(map(int, socket_errors.groups()))) if socket_errors else 0.0,
    }


def run_wrk(url: str, connections: int, seconds: float) -> dict[str, float]:
    duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds
    cmd = ["wrk", "-t1", f"-c{connections}", duration, "--latency", "-s", str(HERE / "wrk_request.lua"), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    return parse_wrk(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="connections for the throughput runs")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("bench: error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    py = sys.executable
    bin_dir = Path(py).parent
    ports = {name: free_port() for name in ("backend", "baseline", "collector", "sensor", "split", "split_admin")}
    tmp = tempfile.mkdtemp(prefix="apiward-bench-")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(cmd: list[str]) -> None:
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        spawn([py, "-m", "bench.backend", str(ports["backend"])])
        backend = f"http://127.0.0.1:{ports['backend']}"
        spawn([py, "-m", "bench.baseline_proxy", str(ports["baseline"]), backend])
        spawn([str(bin_dir / "apiward"), "serve", "--insecure-dev", "--listen", f"127.0.0.1:{ports['collector']}",
               "--database", f"sqlite:///{tmp}/bench.db", "--log-level", "warning"])
        split_more = ["--analysis-process", "--admin-listen", f"127.0.0.1:{ports['split_admin']}"]
        for name, more in (("sensor", ["--no-analysis-process"]), ("split", split_more)):
            spawn([str(bin_dir / "apiward-sensor"), "--upstream", backend, "--listen", f"127.0.0.1:{ports[name]}",
                   "--collector", f"http://127.0.0.1:{ports['collector']}", "--window", "5", "--trusted-proxies",
                   "127.0.0.1/32", "--state-dir", f"{tmp}/{name}", "--log-level", "warning", *more])
        for port in ports.values():
            wait_port(port)

        targets = {
            "direct": f"http://127.0.0.1:{ports['backend']}",
            "baseline proxy": f"http://127.0.0.1:{ports['baseline']}",
            "sensor (detect, one process)": f"http://127.0.0.1:{ports['sensor']}",
            "sensor (detect, --analysis-process: the default on 2+ CPUs)": f"http://127.0.0.1:{ports['split']}",
        }
        # the process (tree) whose CPU a target's requests cost (the backend for direct)
        target_pid = dict(zip(targets, (procs[0].pid, procs[1].pid, procs[3].pid, procs[4].pid), strict=True))
        results: dict[str, dict[str, dict[str, float]]] = {}
        for name, url in targets.items():
            run_wrk(url, 4, 1.0)  # warm-up: pools, caches
            c1 = run_wrk(url, 1, args.seconds)
            before = cpu_seconds(target_pid[name])
            cn = run_wrk(url, args.connections, args.seconds)
            cn["cpu_us_per_request"] = (cpu_seconds(target_pid[name]) - before) / max(cn["requests"], 1) * 1e6
            results[name] = {"c1": c1, f"c{args.connections}": cn}
            print(f"measured {name}", file=sys.stderr)
        from bench.overhead import analysed_share  # the proxy answers first: was everything analysed?

        share = analysed_share(f"http://127.0.0.1:{ports['split_admin']}/metrics")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    ck = f"c{args.connections}"
    direct, base, sensor, split = (results[n] for n in targets)
    summary = {
        "sensor_vs_baseline_rps": sensor[ck]["rps"] / base[ck]["rps"],
        "sensor_vs_direct_rps": sensor[ck]["rps"] / direct[ck]["rps"],
        "added_p50_ms_at_c1": sensor["c1"]["p50_ms"] - direct["c1"]["p50_ms"],
        "baseline_added_p50_ms_at_c1": base["c1"]["p50_ms"] - direct["c1"]["p50_ms"],
        "sensor_vs_baseline_cpu_per_request": sensor[ck]["cpu_us_per_request"] / base[ck]["cpu_us_per_request"],
        "split_vs_baseline_rps": split[ck]["rps"] / base[ck]["rps"],
        "split_added_p50_ms_at_c1": split["c1"]["p50_ms"] - direct["c1"]["p50_ms"],
        "machine_cpus": float(os.cpu_count() or 1),
        "split_analysed_fraction": share["analysed_fraction"],
        "split_dropped": share["dropped"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "proxy_throughput.json").write_text(json.dumps({"results": results, "summary": summary}, indent=2))

    print(f"| target | req/s (c{args.connections}) | p50 ms (c1) | p99 ms (c1) | p50 ms (c{args.connections}) "
          f"| p99 ms (c{args.connections}) | CPU µs/request | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in targets:
        r = results[name]
        print(f"| {name} | {r[ck]['rps']:,.0f} | {r['c1']['p50_ms']:.3f} | {r['c1']['p99_ms']:.3f} | "
              f"{r[ck]['p50_ms']:.2f} | {r[ck]['p99_ms']:.2f} | {r[ck]['cpu_us_per_request']:.0f} | "
              f"{int(r[ck]['non_2xx'] + r['c1']['non_2xx'])} |")
    print()
    print(f"- sensor / baseline proxy req/s: **{summary['sensor_vs_baseline_rps']:.2f}** (goal >= 0.85); "
          f"with --analysis-process **{summary['split_vs_baseline_rps']:.2f}** "
          f"({summary['machine_cpus']:.0f} CPUs shared by wrk, backend and proxies; "
          f"{summary['split_analysed_fraction']:.1%} of its exchanges analysed, "
          f"{summary['split_dropped']:,.0f} dropped and counted)")
    print(f"- sensor / direct req/s: {summary['sensor_vs_direct_rps']:.2f}")
    print(f"- CPU per request, sensor / baseline proxy: {summary['sensor_vs_baseline_cpu_per_request']:.2f}")
    print(f"- median latency added over direct at one connection: sensor **{summary['added_p50_ms_at_c1']:.3f} ms** "
          f"(goal <= 0.5 ms), with --analysis-process **{summary['split_added_p50_ms_at_c1']:.3f} ms**, "
          f"baseline proxy {summary['baseline_added_p50_ms_at_c1']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
