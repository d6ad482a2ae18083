"""``apiward-sensor replay``: HAR and mitmproxy flow files into an empty collector's inventory."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sensor.config import SensorConfig
from sensor.replay import (
    MITM_MISSING,
    SKIP_BAD_ENTRY,
    SKIP_BAD_TIME,
    SKIP_BAD_URL,
    SKIP_NOT_HTTP,
    SKIP_TUNNEL,
    ReplayError,
    SkipEntry,
    har_entry_exchange,
    replay_file,
)
from tests.deploy.conftest import REPO, endpoints
from tests.e2e.conftest import INGEST, read_json

JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsImlzcyI6Imh0dHBzOi8vbG9naW4uZXhhbXBsZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "c2lnbmF0dXJl"
)
API_KEY = "replay-key-1234567890"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def har_entry(
    ts: float,
    method: str,
    url: str,
    status: int,
    headers: dict[str, str] | None = None,
    *,
    body: str | None = None,
    response_text: str = '{"ok": true}',
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "method": method,
        "url": url,
        "httpVersion": "HTTP/2",
        # Chrome lists HTTP/2 pseudo headers among the headers
        "headers": [{"name": ":authority", "value": "shop.example.com"}]
        + [{"name": k, "value": v} for k, v in (headers or {}).items()],
        "queryString": [],
        "headersSize": -1,
        "bodySize": len(body) if body else 0,
    }
    if body is not None:
        request["postData"] = {"mimeType": "application/json", "text": body}
    return {
        "startedDateTime": _iso(ts),
        "time": 12.5,
        "request": request,
        "response": {
            "status": status,
            "statusText": "",
            "httpVersion": "HTTP/2",
            "headers": [
                {"name": "content-type", "value": "application/json"},
                {"name": "content-encoding", "value": "br"},  # HAR's text is decoded: must be dropped
            ],
            "content": {"size": len(response_text), "mimeType": "application/json", "text": response_text},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {"send": 1, "wait": 10, "receive": 1.5},
    }


def write_har(path: Path, base: float) -> None:
    """A browser-like capture: 9 usable entries on 3 endpoints, 3 entries that must be skipped."""
    entries = [har_entry(base + i, "GET", f"https://shop.example.com/api/orders/{1000 + i}", 200,
                         {"Authorization": f"Bearer {JWT}"}) for i in range(4)]
    entries.append(har_entry(base + 4, "GET", "https://shop.example.com/api/orders/77", 401))
    entries += [
        har_entry(base + 5 + i, "POST", "https://shop.example.com/api/carts", 201, {"X-Api-Key": API_KEY},
                  body=json.dumps({"sku": "A-1", "qty": i + 1}))
        for i in range(2)
    ]
    entries += [har_entry(base + 7 + i, "GET", "https://shop.example.com/api/catalog?page=2", 200) for i in range(2)]
    # to be skipped, each for its own reason
    entries.append(har_entry(base + 9, "CONNECT", "https://shop.example.com:443", 200))
    entries.append(har_entry(base + 10, "GET", "ftp://shop.example.com/file", 200))
    bad = har_entry(base + 11, "GET", "https://shop.example.com/api/catalog", 200)
    bad["startedDateTime"] = "yesterday"
    entries.append(bad)
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "test", "version": "1"},
                                        "entries": entries}}))


def replay_cfg(tmp_path: Path, collector: str | None, **kw: Any) -> SensorConfig:
    return SensorConfig(
        mode="mirror", collector=collector, ingest_token=INGEST, window=60.0, state_dir=str(tmp_path / "state"), **kw
    ).validate()


async def test_har_replay_builds_the_inventory_its_traffic_implies(tmp_path: Path, collector_url: str) -> None:
    har = tmp_path / "shop.har"
    write_har(har, time.time() - 300)
    report = await replay_file(replay_cfg(tmp_path, collector_url), har)

    assert report.format == "har" and report.read == 12 and report.analysed == 9
    assert dict(report.skipped) == {SKIP_TUNNEL: 1, SKIP_BAD_URL: 1, SKIP_BAD_TIME: 1}
    assert report.ok and report.batches_shipped >= 1 and report.analysis_errors == 0
    assert len(report.endpoints) == 3

    eps = await endpoints(collector_url)
    assert set(eps) == {("GET", "/api/orders/{id}"), ("POST", "/api/carts"), ("GET", "/api/catalog")}
    orders = eps[("GET", "/api/orders/{id}")]
    # without --api-name the capture's host names the API (":authority" became Host)
    assert orders["api"] == "shop.example.com"
    assert orders["requests_30d"] == 5
    assert orders["auth_schemes"] == {"jwt": 4, "none": 1}
    assert orders["authentication"] == "authenticated"
    carts = eps[("POST", "/api/carts")]
    assert carts["requests_30d"] == 2 and carts["auth_schemes"] == {"api_key": 2}
    catalog = eps[("GET", "/api/catalog")]
    assert catalog["requests_30d"] == 2 and catalog["auth_schemes"] == {"none": 2}
    assert catalog["authentication"] == "unauthenticated"
    # HAR records no client address: nothing may be called internet-exposed
    assert all(e["external_traffic_observed"] is None for e in eps.values())

    inventory = await read_json(collector_url, "/api/v1/inventory")
    assert [s["mode"] for s in inventory["sensors"]] == ["replay"]
    assert inventory["counts"]["endpoints"] == 3


async def test_a_malformed_har_entry_is_skipped_and_the_rest_analysed(tmp_path: Path) -> None:
    # Entries are decoded one at a time: invalid UTF-8 inside one entry's strings (the document is
    # still well-formed JSON) or an entry that is not an object costs that entry, not the file.
    base = time.time() - 300
    good = [json.dumps(har_entry(base + i, "GET", f"https://shop.example.com/api/orders/{i}", 200)).encode()
            for i in range(3)]
    broken = json.dumps(har_entry(base + 3, "GET", "https://shop.example.com/api/orders/9", 200,
                                  {"X-Note": "MARK"})).encode().replace(b"MARK", b"\xff\xfe")
    assert b"\xff" in broken
    har = tmp_path / "mixed.har"
    entries = b", ".join([good[0], broken, b"3", *good[1:]])
    har.write_bytes(b'{"log": {"version": "1.2", "entries": [' + entries + b"]}}")
    report = await replay_file(replay_cfg(tmp_path, None), har)
    assert report.read == 5 and report.analysed == 3 and report.analysis_errors == 0
    assert dict(report.skipped) == {SKIP_BAD_ENTRY: 2}
    assert report.endpoints == {("shop.example.com", "GET", "/api/orders/{id}")}


def test_har_urls_become_exchanges_without_their_credentials() -> None:
    base = time.time()
    url = "https://alice:s3cret@shop.example.com:8443/a/%7Bb%7D?x=1#frag"
    ex = har_entry_exchange(har_entry(base, "GET", url, 200), 1024)
    assert (ex.listener_scheme, ex.path, ex.query_string) == ("https", "/a/{b}", "x=1")
    # the ":authority" pseudo header is dropped; the URL's authority, without its userinfo, is the Host
    assert ex.request_headers.getall("Host") == ["shop.example.com:8443"]
    assert "s3cret" not in repr(ex) and ":authority" not in ex.request_headers
    v6 = har_entry_exchange(har_entry(base, "POST", "HTTP://[::1]:8080?q=2", 201, {"Host": "given"}), 1024)
    assert (v6.listener_scheme, v6.path, v6.query_string, v6.request_headers["Host"]) == ("http", "/", "q=2", "given")
    for url in ("ftp://shop.example.com/x", "https:///x", "https://user@:80/x", "/relative/only", "https//no-colon"):
        with pytest.raises(SkipEntry) as skipped:
            har_entry_exchange(har_entry(base, "GET", url, 200), 1024)
        assert skipped.value.reason == SKIP_BAD_URL, url


# ---------------------------------------------------------------------------------------------------
# mitmproxy flow files


def make_flow(ts: float, method: str, url: str, status: int | None, headers: dict[str, str], *,
              peer: str = "81.2.69.160", body: bytes = b"") -> Any:
    mitm_http = pytest.importorskip("mitmproxy.http")  # the HAR tests still run without mitmproxy
    tflow = pytest.importorskip("mitmproxy.test.tflow")
    request = mitm_http.Request.make(method, url, body, headers)
    request.timestamp_start, request.timestamp_end = ts, ts + 0.001
    if status is None:  # the upstream failed: no response, an error
        flow = tflow.tflow(req=request, err=True)
    else:
        response = mitm_http.Response.make(status, b'{"id": 5}', {"Content-Type": "application/json"})
        response.timestamp_start, response.timestamp_end = ts + 0.01, ts + 0.02
        flow = tflow.tflow(req=request, resp=response)
    flow.client_conn.peername = (peer, 50000)
    return flow


def write_flows(path: Path, base: float) -> None:
    mitm_io = pytest.importorskip("mitmproxy.io")
    tflow = pytest.importorskip("mitmproxy.test.tflow")
    flows = [
        make_flow(base + i, "GET", f"http://billing.internal:8080/v1/invoices/{i + 10}", 200,
                  {"Authorization": "Basic YWxpY2U6c2VjcmV0"})
        for i in range(3)
    ]
    flows.append(make_flow(base + 3, "GET", "http://billing.internal:8080/v1/invoices/99", None, {}, peer="10.1.2.3"))
    flows += [
        make_flow(base + 4 + i, "POST", "http://billing.internal:8080/v1/payments?api_key=" + API_KEY, 202,
                  {"Content-Type": "application/json"}, peer="10.1.2.3", body=b'{"amount": 12}')
        for i in range(2)
    ]
    flows.append(tflow.ttcpflow())  # a raw TCP flow in the same file: not HTTP, skipped
    with path.open("wb") as fh:
        writer = mitm_io.FlowWriter(fh)
        for flow in flows:
            writer.add(flow)


async def test_flow_file_replay_builds_the_inventory_its_traffic_implies(tmp_path: Path, collector_url: str) -> None:
    flows = tmp_path / "billing.flows"
    write_flows(flows, time.time() - 200)
    report = await replay_file(replay_cfg(tmp_path, collector_url, api_name="billing"), flows)

    assert report.format == "flows" and report.read == 7 and report.analysed == 6
    assert dict(report.skipped) == {SKIP_NOT_HTTP: 1}
    assert report.ok and report.batches_shipped >= 1

    eps = await endpoints(collector_url)
    assert set(eps) == {("GET", "/v1/invoices/{id}"), ("POST", "/v1/payments")}
    invoices = eps[("GET", "/v1/invoices/{id}")]
    assert invoices["api"] == "billing"
    assert invoices["requests_30d"] == 4
    assert invoices["auth_schemes"] == {"basic": 3, "none": 1}
    # the client addresses in the flows: 81.2.69.160 is on the internet
    assert invoices["external_traffic_observed"] is not None
    payments = eps[("POST", "/v1/payments")]
    assert payments["requests_30d"] == 2 and payments["auth_schemes"] == {"api_key": 2}
    assert payments["external_traffic_observed"] is None  # 10.1.2.3 is internal


async def test_flow_file_without_mitmproxy_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flows = tmp_path / "x.flows"
    write_flows(flows, time.time())
    monkeypatch.setitem(sys.modules, "mitmproxy", None)  # import mitmproxy -> ImportError
    with pytest.raises(ReplayError, match="pip install 'apiward\\[mitm\\]'"):
        await replay_file(replay_cfg(tmp_path, None), flows)
    assert MITM_MISSING.count("\n") == 0


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensor.cli", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_cli_replays_and_prints_a_summary(tmp_path: Path, collector_url: str) -> None:
    har = tmp_path / "shop.har"
    write_har(har, time.time() - 300)
    code, out, err = await run_cli(
        "replay", str(har), "--collector", collector_url, "--state-dir", str(tmp_path / "state"),
        env={"APIWARD_INGEST_TOKEN": INGEST},
    )
    assert code == 0, err
    assert "12 entries read, 9 exchanges analysed" in out
    assert "skipped 3:" in out and "endpoints: 3" in out and "0 rejected, 0 not delivered" in out
    assert "replay: 100%" in err  # progress (not a terminal: one line per 10 %)
    assert sum(e["requests_30d"] for e in (await endpoints(collector_url)).values()) == 9


async def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    code, _, err = await run_cli("replay", str(tmp_path / "missing.har"))
    assert code == 2 and err.strip().count("\n") == 0 and "no such file" in err
    bad = tmp_path / "bad.har"
    bad.write_text('{"not": "a har"}')
    code, _, err = await run_cli("replay", str(bad), "--state-dir", str(tmp_path / "s"))
    assert code == 1 and err.strip().count("\n") == 0 and "no log.entries" in err
    for broken in (b'{"log": {"entries": [', b'{"log": "\xff\xfe"}'):  # cut short; invalid UTF-8
        bad.write_bytes(broken)
        code, _, err = await run_cli("replay", str(bad), "--state-dir", str(tmp_path / "s"))
        assert code == 1 and err.strip().count("\n") == 0 and "not valid JSON" in err, err
    # the sensor's own flags are untouched by the replay subcommand
    code, out, _ = await run_cli("--version")
    assert code == 0 and out.startswith("apiward-sensor ")
