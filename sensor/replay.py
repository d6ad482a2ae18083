"""``apiward-sensor replay FILE``: HAR files and mitmproxy flow files into the sensor's pipeline.

A capture is analysed exactly like live traffic: every entry becomes an ``Exchange`` that goes
through the same ``Pipeline`` -> ``SummaryAggregator`` -> ``Shipper`` chain as in ``SensorRuntime``.
Windows follow the timestamps in the file (the aggregator aligns them on the epoch clock), so a
replayed capture lands in the collector in the windows it was recorded in, not "now".

mitmproxy is optional (the ``mitm`` extra): it is imported only when a flow file is read, and a
missing install is one clear line, not a traceback. The flow -> ``Exchange`` conversion lives here so
that ``sensor/mitm_addon.py`` (live traffic through mitmproxy) and replay agree on every field.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import os
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from apiward.logs import configure_logging, get_logger
from sensor import __version__
from sensor.config import ConfigError, SensorConfig, load_config
from sensor.events import EndpointSummary, SensorInfo, SensorStats
from sensor.evidence import PrincipalHasher
from sensor.exchange import Exchange
from sensor.har_schema import HarDocument
from sensor.http_common import decode_path, sane_request_id, split_absolute_url, split_target
from sensor.pipeline import Pipeline
from sensor.shipper import Shipper
from sensor.state import load_principal_secret
from sensor.summary import SummaryAggregator

log = get_logger("sensor.replay")

# Summaries per batch: far below the collector's 8 MiB body limit even with many params per endpoint.
BATCH_SUMMARIES = 500
# Every this many exchanges, windows that ended well before the newest timestamp are shipped, so a
# long capture never holds all its windows in memory. Captures are near time-ordered; an entry that
# arrives after its window was shipped only makes a second (additive) summary for that window.
DRAIN_EVERY = 2000
FLUSH_TIMEOUT = 60.0  # seconds to wait for the collector to take every batch at the end
MITM_MISSING = "reading mitmproxy flow files needs mitmproxy: pip install 'apiward[mitm]'"

# Why an entry was not replayed (the summary counts them by reason).
SKIP_NOT_HTTP = "not an HTTP flow"
SKIP_TUNNEL = "CONNECT tunnel"
SKIP_BAD_ENTRY = "malformed entry"
SKIP_BAD_URL = "not an http(s) URL"
SKIP_BAD_TIME = "no valid timestamp"


class ReplayError(Exception):
    """The file cannot be replayed at all (message is shown to the operator as is)."""


class SkipEntry(Exception):
    """One entry cannot become an Exchange; ``reason`` is one of the SKIP_* texts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------------
# shared helpers


def _strip_pseudo(pairs: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    # HTTP/2 captures (Chrome's HAR, some mitmproxy exports) list ":authority", ":path" ... as headers;
    # they are not header fields and would confuse evidence (":authority" is the Host).
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        if name.startswith(":"):
            continue
        out.add(name, value)
    return out


def _version(raw: str) -> str:
    """``HTTP/1.1`` -> ``1.1``, ``h2`` / ``HTTP/2.0`` -> ``2.0``."""
    text = raw.strip().upper()
    if text in ("H2", "HTTP/2"):
        return "2.0"
    if text in ("H3", "HTTP/3"):
        return "3.0"
    return text.removeprefix("HTTP/") or "1.1"


# ---------------------------------------------------------------------------------------------------
# HAR 1.2


def _har_headers(raw: Any) -> CIMultiDict[str]:
    """HAR's ``[{"name", "value"}]`` list as a header multimap, HTTP/2 pseudo headers left out (as
    ``_strip_pseudo``; one pass, no intermediate list: this runs twice per replayed entry)."""
    if not isinstance(raw, list):
        raise SkipEntry(SKIP_BAD_ENTRY)
    out: CIMultiDict[str] = CIMultiDict()
    for item in raw:
        if not isinstance(item, dict):
            raise SkipEntry(SKIP_BAD_ENTRY)
        name = item.get("name")
        if not isinstance(name, str):
            raise SkipEntry(SKIP_BAD_ENTRY)
        if not name.startswith(":"):
            out.add(name, str(item.get("value", "")))
    return out


def _har_url(raw: Any) -> tuple[str, str, str]:
    """An entry's URL as (scheme, authority without userinfo, request target); raises ``SkipEntry``
    unless it is absolute http(s) with a host."""
    parts = split_absolute_url(raw) if isinstance(raw, str) else None
    if parts is None:
        raise SkipEntry(SKIP_BAD_URL)
    return parts


def _har_text(text: Any, encoding: Any) -> bytes:
    if not isinstance(text, str):
        return b""
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SkipEntry(SKIP_BAD_ENTRY) from exc
    return text.encode("utf-8", "surrogatepass")


def _har_time(value: Any) -> float:
    if not isinstance(value, str):
        raise SkipEntry(SKIP_BAD_TIME)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SkipEntry(SKIP_BAD_TIME) from exc
    if parsed.tzinfo is None:  # HAR requires an offset; a naive time would silently shift windows
        raise SkipEntry(SKIP_BAD_TIME)
    return parsed.timestamp()


def har_entry_exchange(entry: Any, inspect_bytes: int) -> Exchange:
    """One HAR ``log.entries[]`` item as an Exchange; raises ``SkipEntry`` with the reason."""
    if not isinstance(entry, dict):
        raise SkipEntry(SKIP_BAD_ENTRY)
    request, response = entry.get("request"), entry.get("response")
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        raise SkipEntry(SKIP_BAD_ENTRY)
    method = request["method"].upper()
    if method == "CONNECT":
        raise SkipEntry(SKIP_TUNNEL)
    scheme, authority, target = _har_url(request.get("url"))
    started_at = _har_time(entry.get("startedDateTime"))

    headers = _har_headers(request.get("headers", []))
    if "Host" not in headers:
        headers["Host"] = authority
    post = request.get("postData")
    req_body = _har_text(post.get("text"), post.get("encoding")) if isinstance(post, dict) else b""
    declared = request.get("bodySize")
    req_size = declared if isinstance(declared, int) and declared >= len(req_body) else len(req_body)

    status = 0
    resp_headers: CIMultiDict[str] = CIMultiDict()
    resp_body = b""
    resp_size = 0
    if isinstance(response, dict):
        raw_status = response.get("status", 0)
        status = raw_status if isinstance(raw_status, int) and 0 <= raw_status <= 599 else 0
        resp_headers = _har_headers(response.get("headers", []))
        content = response.get("content")
        if isinstance(content, dict):
            resp_body = _har_text(content.get("text"), content.get("encoding"))
            if "text" in content:
                # HAR keeps the *decoded* body: drop the framing that no longer describes it, so
                # later stages never try to gunzip plain text.
                resp_headers.popall("Content-Encoding", None)
            size = content.get("size")
            resp_size = size if isinstance(size, int) and size >= len(resp_body) else len(resp_body)

    raw_path, raw_query = split_target(target)
    duration = entry.get("time")
    return Exchange(
        request_id=sane_request_id(None),
        method=method,
        path=decode_path(raw_path),
        query_string=raw_query,
        request_headers=CIMultiDictProxy(headers),  # built here, referenced nowhere else: no copy
        # HAR records no client address: an empty peer is "unknown", never "external"
        peer_ip=str(entry.get("_clientAddress") or ""),
        listener_scheme=scheme,
        http_version=_version(str(request.get("httpVersion") or "HTTP/1.1")),
        request_body=req_body[:inspect_bytes],
        request_body_size=req_size,
        status=status,
        response_headers=CIMultiDictProxy(resp_headers),
        response_body=resp_body[:inspect_bytes],
        response_body_size=resp_size,
        started_at=started_at,
        duration_ms=float(duration) if isinstance(duration, int | float) and duration >= 0 else 0.0,
        source="replay",
        upstream_error=None if status else "no_response",
    )


# The document is split into its entries' undecoded JSON text (msgspec.Raw: slices of the file's bytes,
# validated as JSON but not turned into objects) in one pass; each entry becomes Python objects only
# when its turn comes and is garbage right after. Decoding the whole capture at once kept millions of
# dicts alive, and every garbage collection pass of the run walked all of them: about 5 of the ~60
# microseconds per entry, and memory several times the file's size.
_har_document = msgspec.json.Decoder(HarDocument)
_har_entry = msgspec.json.Decoder()


def read_har(path: Path) -> list[msgspec.Raw]:
    """The entries of a HAR file, each still as its JSON text (``decode_har_entry`` decodes one)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        entries = _har_document.decode(data).log.entries
    except msgspec.ValidationError as exc:
        try:  # valid JSON of the wrong shape, or not JSON at all? (only on this error path)
            msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as not_json:
            raise ReplayError(f"{path} is not a HAR file: not valid JSON ({not_json})") from exc
        raise ReplayError(f"{path} is not a HAR file: no log.entries list") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter for bad UTF-8
        raise ReplayError(f"{path} is not a HAR file: not valid JSON ({exc})") from exc
    return entries


def decode_har_entry(raw: msgspec.Raw) -> Any:
    """One entry's JSON text as Python objects. The document split checks JSON syntax but not the
    UTF-8 inside strings: an entry with invalid text is skipped as malformed, the others still count."""
    try:
        return _har_entry.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SkipEntry(SKIP_BAD_ENTRY) from exc


# ---------------------------------------------------------------------------------------------------
# mitmproxy flows


def flow_exchange(flow: Any, inspect_bytes: int, source: str = "replay") -> Exchange:
    """A mitmproxy ``HTTPFlow`` as an Exchange (also used live by ``sensor/mitm_addon.py``).

    Bodies are ``raw_content`` (bytes as on the wire) with their headers unchanged, as the inline
    proxy keeps them; ``None`` content (streamed flows) is an empty prefix of unknown size.
    """
    request = getattr(flow, "request", None)
    if request is None or getattr(flow, "type", "http") != "http":
        raise SkipEntry(SKIP_NOT_HTTP)
    if request.method.upper() == "CONNECT":
        raise SkipEntry(SKIP_TUNNEL)
    if request.scheme not in ("http", "https"):
        raise SkipEntry(SKIP_BAD_URL)
    started_at = request.timestamp_start
    if not isinstance(started_at, int | float) or started_at <= 0:
        raise SkipEntry(SKIP_BAD_TIME)

    headers = _strip_pseudo(request.headers.items(multi=True))
    if "Host" not in headers:
        # HTTP/2 carries the authority as a pseudo header; evidence and routing want it as Host
        authority = request.host_header or request.pretty_host
        if authority:
            headers["Host"] = authority
    req_body = request.raw_content or b""
    response = flow.response
    status = 0
    resp_headers: CIMultiDict[str] = CIMultiDict()
    resp_body = b""
    ended = request.timestamp_end or started_at
    if response is not None:
        status = int(response.status_code)
        resp_headers = _strip_pseudo(response.headers.items(multi=True))
        resp_body = response.raw_content or b""
        ended = response.timestamp_end or response.timestamp_start or ended
    peer = flow.client_conn.peername if flow.client_conn is not None else None
    raw_path, raw_query = split_target(request.path or "/")
    error = flow.error
    return Exchange(
        request_id=sane_request_id(str(flow.id)),
        method=request.method.upper(),
        path=decode_path(raw_path),
        query_string=raw_query,
        request_headers=CIMultiDictProxy(headers),
        peer_ip=str(peer[0]) if peer else "",
        listener_scheme=request.scheme,
        http_version=_version(request.http_version),
        request_body=req_body[:inspect_bytes],
        request_body_size=len(req_body),
        status=status,
        response_headers=CIMultiDictProxy(resp_headers),
        response_body=resp_body[:inspect_bytes],
        response_body_size=len(resp_body),
        started_at=float(started_at),
        duration_ms=max(0.0, (float(ended) - float(started_at)) * 1000.0),
        source=source,
        upstream_error=None if response is not None else ("upstream_error" if error else "no_response"),
    )


def _flow_reader(fh: BinaryIO) -> Any:
    try:
        from mitmproxy import io as mitm_io  # type: ignore[import-not-found, unused-ignore]  # optional extra
    except ImportError as exc:
        raise ReplayError(MITM_MISSING) from exc
    return mitm_io.FlowReader(fh)


# ---------------------------------------------------------------------------------------------------
# the replay itself


@dataclass(slots=True)
class ReplayReport:
    path: str
    format: str
    read: int = 0  # entries read from the file
    analysed: int = 0  # exchanges handed to the pipeline
    skipped: Counter[str] = field(default_factory=Counter)
    analysis_errors: int = 0
    endpoints: set[tuple[str, str, str]] = field(default_factory=set)
    summaries: int = 0
    batches_submitted: int = 0
    batches_shipped: int = 0
    batches_rejected: int = 0
    batches_pending: int = 0  # not delivered at the end (spooled for a later run)
    shipped: bool = False  # False: no collector configured, summaries were only logged
    first_ts: float | None = None
    last_ts: float | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.batches_rejected == 0 and self.batches_pending == 0

    def lines(self) -> list[str]:
        rate = self.analysed / self.seconds if self.seconds > 0 else 0.0
        span = ""
        if self.first_ts is not None and self.last_ts is not None:
            span = f" from {_iso(self.first_ts)} to {_iso(self.last_ts)}"
        out = [
            f"replayed {self.path} ({self.format}): {self.read} entries read, {self.analysed} exchanges analysed"
            f"{span} in {self.seconds:.2f} s ({rate:.0f} exchanges/s)",
        ]
        if self.skipped:
            reasons = ", ".join(f"{reason} ({n})" for reason, n in self.skipped.most_common())
            out.append(f"skipped {sum(self.skipped.values())}: {reasons}")
        if self.analysis_errors:
            out.append(f"analysis errors: {self.analysis_errors}")
        out.append(f"endpoints: {len(self.endpoints)}, summaries: {self.summaries}")
        if not self.shipped:
            out.append(f"batches: {self.batches_submitted} logged (no --collector: nothing shipped)")
        else:
            out.append(
                f"batches: {self.batches_shipped} shipped, {self.batches_rejected} rejected, "
                f"{self.batches_pending} not delivered (kept in the spool)"
            )
        return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Progress:
    """A progress bar on a terminal, a line every 10 % otherwise (CI logs stay short)."""

    def __init__(self, stream: IO[str] | None, total: int, unit: str) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.unit = unit
        self.tty = bool(stream is not None and stream.isatty())
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, done: int, exchanges: int) -> None:
        if self.stream is None:
            return
        fraction = min(done / self.total, 1.0)
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and fraction < 1.0:
                return
            self._last_draw = now
            bar = "#" * int(fraction * 30)
            self.stream.write(f"\rreplay [{bar:<30}] {fraction:4.0%} {exchanges} exchanges")
            self.stream.flush()
            return
        decile = int(fraction * 10)
        if decile > self._last_decile:
            self._last_decile = decile
            self.stream.write(f"replay: {fraction:4.0%} ({done}/{self.total} {self.unit}), {exchanges} exchanges\n")
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def detect_format(path: Path) -> str:
    """``har`` for JSON documents, ``flows`` for mitmproxy's tnetstring dumps."""
    if path.suffix.lower() in (".har", ".json"):
        return "har"
    if path.suffix.lower() in (".flows", ".flow", ".mitm"):
        return "flows"
    try:
        with path.open("rb") as fh:
            head = fh.read(64).lstrip()
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return "har" if head.startswith(b"{") else "flows"


def _entries(
    path: Path, fmt: str, inspect_bytes: int, progress: IO[str] | None
) -> Iterator[tuple[Exchange | str, int]]:
    """(exchange or skip reason, entries read so far), with the progress bar kept up to date."""
    if fmt == "har":
        entries = read_har(path)
        bar = Progress(progress, len(entries), "entries")
        analysed = 0
        for done, entry in enumerate(entries, 1):
            try:
                item: Exchange | str = har_entry_exchange(decode_har_entry(entry), inspect_bytes)
                analysed += 1
            except SkipEntry as skip:
                item = skip.reason
            yield item, done
            bar.update(done, analysed)
        bar.close()
        return
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        reader = _flow_reader(fh)
        size = os.fstat(fh.fileno()).st_size
        bar = Progress(progress, size, "bytes")
        done = analysed = 0
        try:
            for flow in reader.stream():
                done += 1
                try:
                    item = flow_exchange(flow, inspect_bytes)
                    analysed += 1
                except SkipEntry as skip:
                    item = skip.reason
                yield item, done
                bar.update(fh.tell(), analysed)
        except Exception as exc:  # mitmproxy raises FlowReadException (and others) on bad files
            if type(exc).__name__ != "FlowReadException":
                raise
            raise ReplayError(f"{path} is not a mitmproxy flow file: {exc}") from exc
        bar.close()


def replay_sensor_info(path: Path) -> SensorInfo:
    # A replay is its own "sensor" in the collector: sharing the live sensor's id would overwrite
    # that sensor's mode and stats with the replay's.
    return SensorInfo(
        id=uuid.uuid4().hex,
        name=f"replay {path.name} on {socket.gethostname()}",
        version=__version__,
        mode="replay",
        started_at=datetime.now(UTC),
    )


def _api_name(cfg: SensorConfig, first: Exchange) -> str:
    if cfg.api_name:
        return cfg.api_name
    host = first.request_headers.get("Host", "")
    try:
        name = URL(f"http://{host}").host if host else None
    except ValueError:
        name = None
    return name or "default"


async def replay_file(
    cfg: SensorConfig,
    path: Path,
    *,
    progress: IO[str] | None = None,
    flush_timeout: float = FLUSH_TIMEOUT,
) -> ReplayReport:
    """Replay one capture into the pipeline and ship the summaries; never raises for one bad entry."""
    fmt = detect_format(path)
    report = ReplayReport(path=str(path), format=fmt, shipped=cfg.collector is not None)
    started = time.perf_counter()
    aggregator = SummaryAggregator(cfg.window)
    pipeline: Pipeline | None = None

    def stats() -> SensorStats:
        if pipeline is None:
            return SensorStats()
        return SensorStats(exchanges=pipeline.counters.exchanges, analysis_errors=pipeline.counters.analysis_errors)

    shipper = Shipper(
        cfg.collector,
        cfg.ingest_token,
        replay_sensor_info(path),
        # separate from the live sensor's spool: its batches are not ours to send
        spool_dir=str(Path(cfg.state_dir) / "replay-spool"),
        spool_max_bytes=cfg.spool_max_bytes,
        queue_max_batches=cfg.queue_max_batches,
        stats=stats,
    )
    await shipper.start()

    def ship(summaries: list[EndpointSummary]) -> None:
        report.summaries += len(summaries)
        for s in summaries:
            report.endpoints.add((s.api, s.method, s.path))
        for i in range(0, len(summaries), BATCH_SUMMARIES):
            shipper.submit(summaries[i : i + BATCH_SUMMARIES])
            report.batches_submitted += 1

    try:
        for item, done in _entries(path, fmt, cfg.inspect_bytes, progress):
            report.read = done
            if isinstance(item, str):
                report.skipped[item] += 1
                continue
            if pipeline is None:
                # Built on the first exchange: without --api-name the capture's own host names the API.
                api_cfg = dataclasses.replace(cfg, api_name=_api_name(cfg, item))
                pipeline = Pipeline(api_cfg, aggregator, PrincipalHasher(load_principal_secret(cfg)))
            pipeline.submit(item)
            report.analysed += 1
            ts = item.started_at
            report.first_ts = ts if report.first_ts is None else min(report.first_ts, ts)
            report.last_ts = ts if report.last_ts is None else max(report.last_ts, ts)
            if report.analysed % DRAIN_EVERY == 0:
                ship(aggregator.drain(report.last_ts - cfg.window))
                await asyncio.sleep(0)  # let the shipper send while the file is read
        ship(aggregator.drain(0.0, force=True))
        if pipeline is not None:
            report.analysis_errors = pipeline.counters.analysis_errors
        if report.shipped:
            await shipper.flush(flush_timeout)
    finally:
        await shipper.stop()
        report.batches_shipped = shipper.shipped_batches
        report.batches_rejected = shipper.rejected_batches
        report.batches_pending = shipper.pending_batches
        report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="apiward-sensor replay",
        description="Replay a HAR file or a mitmproxy flow file through the sensor's analysis and ship the "
        "summaries to the collector, in the time windows the capture was recorded in. The ingest token "
        "comes from APIWARD_INGEST_TOKEN.",
    )
    p.add_argument("file", help="capture: .har (JSON) or a mitmproxy flow file (mitmdump -w)")
    p.add_argument("--collector", help="collector base URL; without it summaries are only logged")
    p.add_argument("--api-name", dest="api_name", help="API collection name (default: the first request's host)")
    p.add_argument("--spec", dest="specs", action="append", help="OpenAPI file for routing (repeatable)")
    p.add_argument("--window", type=float, help="summary window in seconds (default 60)")
    p.add_argument("--trusted-proxies", dest="trusted_proxies", help="CIDR,... whose X-Forwarded-For is believed")
    p.add_argument("--internal-cidrs", dest="internal_cidrs", help="CIDR,... that count as internal clients")
    p.add_argument("--state-dir", dest="state_dir", help="directory for the spool and the principal key")
    p.add_argument("--inspect-bytes", dest="inspect_bytes", type=int, help="body prefix analysed (64 KiB)")
    p.add_argument("--config", help="YAML configuration file (as for the sensor)")
    p.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.file)
    flags: dict[str, Any] = {
        k: v for k, v in vars(args).items() if k not in ("config", "file", "quiet") and v is not None
    }
    # The listener settings are irrelevant to a replay; "mirror" only satisfies validation (no upstream).
    flags.update(mode="mirror", log_level=args.log_level or "warning")
    try:
        cfg = load_config(flags, args.config)
    except ConfigError as exc:
        print(f"apiward-sensor replay: error: {exc}", file=sys.stderr)
        return 2
    if not path.is_file():
        print(f"apiward-sensor replay: error: no such file: {path}", file=sys.stderr)
        return 2
    configure_logging(cfg.log_level, component="sensor")
    try:
        report = asyncio.run(replay_file(cfg, path, progress=None if args.quiet else sys.stderr))
    except ReplayError as exc:
        print(f"apiward-sensor replay: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the state directory is not writable
        where = f": {exc.filename}" if exc.filename else ""
        print(f"apiward-sensor replay: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    for line in report.lines():
        print(line)
    if not report.ok:
        print(
            f"apiward-sensor replay: error: {report.batches_rejected} batch(es) rejected, "
            f"{report.batches_pending} not delivered to {cfg.collector}",
            file=sys.stderr,
        )
        return 1
    return 0
