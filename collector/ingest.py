"""Read, decompress and validate a sensor's batch before it reaches the store.

The body is read as a stream with our own caps: the wire size first (``max_body_bytes``), then the
gzip output is inflated in bounded steps (``max_decompressed_bytes``) so a decompression bomb costs
at most the cap, never the bomb's full size. Validation goes beyond the msgspec contract to the
limits of our columns (lengths, counter ranges, no NUL), so bad input answers 4xx and never 500.
"""

from __future__ import annotations

import asyncio
import math
import re
import zlib
from datetime import datetime

import msgspec
from aiohttp import web

from collector.alerts import SEVERITIES
from collector.problems import ApiError
from sensor.events import MAX_SKETCHES_PER_SUMMARY, SKETCH_MAX_RANK, SKETCH_REGISTERS, Batch, decode_batch

_CHUNK = 64 * 1024
_THREAD_THRESHOLD = 256 * 1024  # bigger bodies are inflated and decoded off the event loop
MAX_COUNT = 2**53  # every counter fits a BIGINT and a JSON double with room to add
_DEFAULT_STR = 2048
# Column sizes of collector/store/schema.py, by (struct, field).
_LIMITS: dict[tuple[str, str], int] = {
    ("Batch", "batch_id"): 128,
    ("SensorInfo", "id"): 128,
    ("SensorInfo", "name"): 200,
    ("SensorInfo", "version"): 64,
    ("SensorInfo", "mode"): 32,
    ("EndpointSummary", "api"): 200,
    ("EndpointSummary", "method"): 16,
    ("EndpointSummary", "name"): 200,
    ("EndpointSummary", "status_classes"): 8,
    ("EndpointSummary", "auth_schemes"): 64,
    ("ParamSeen", "location"): 32,
    ("ParamSeen", "name"): 256,
    ("DataTypeSeen", "type"): 64,
    ("DataTypeSeen", "location"): 32,
    ("DataTypeSeen", "path"): 512,
    ("DataTypeSeen", "status_class"): 8,
    ("AlertEvent", "type"): 100,
    ("AlertEvent", "title"): 300,
    ("AlertEvent", "rule_ids"): 128,
    ("AlertEndpoint", "api"): 200,
    ("AlertEndpoint", "method"): 16,
    ("AlertClient", "ip"): 64,
    ("AlertClient", "principal"): 128,
    ("ParamSketch", "location"): 32,
    ("ParamSketch", "name"): 256,
    ("ParamSketch", "hash_id"): 32,
}
_REQUIRED = {
    ("Batch", "batch_id"), ("SensorInfo", "id"), ("EndpointSummary", "api"), ("EndpointSummary", "method"),
    ("EndpointSummary", "path"), ("AlertEvent", "type"), ("AlertEndpoint", "api"),
    ("AlertEndpoint", "method"), ("AlertEndpoint", "path"), ("ParamSketch", "location"), ("ParamSketch", "name"),
}
_MAX_SKETCH_WINDOW = 7 * 86400.0
_MAX_EVIDENCE_BYTES = 16 * 1024
_METHOD = re.compile(r"[A-Za-z]{1,16}")


async def read_body(request: web.Request, max_body: int, max_decompressed: int) -> bytes:
    """The request body, inflated when ``Content-Encoding: gzip``; 413/415/400 on bad input."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise ApiError(415, f"Content-Encoding {encoding!r} is not supported (use gzip or none)")
    if request.content_length is not None and request.content_length > max_body:
        raise ApiError(413, f"body of {request.content_length} bytes is over the {max_body} byte limit")
    body = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > max_body:
            raise ApiError(413, f"body is over the {max_body} byte limit")
    if encoding == "identity":
        if len(body) > max_decompressed:
            raise ApiError(413, f"body is over the {max_decompressed} byte limit")
        return bytes(body)
    if len(body) > _THREAD_THRESHOLD:
        return await asyncio.to_thread(gunzip_bounded, bytes(body), max_decompressed)
    return gunzip_bounded(bytes(body), max_decompressed)


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Inflate gzip ``data``, giving up (413) as soon as the output passes ``limit`` bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    try:
        while not inflater.eof:
            # max_length bounds this step's output; the rest of the input waits in unconsumed_tail.
            step = inflater.decompress(data, limit + 1 - len(out))
            out += step
            if len(out) > limit:
                raise ApiError(413, f"decompressed body is over the {limit} byte limit")
            data = inflater.unconsumed_tail
            if not step and not data:  # input exhausted and nothing pending: truncated stream
                break
        if not inflater.eof:
            raise ApiError(400, "gzip body is truncated")
    except zlib.error as exc:
        raise ApiError(400, f"body is not valid gzip: {exc}") from exc
    if inflater.unused_data.strip(b"\x00"):
        raise ApiError(400, "unexpected data after the gzip stream")
    return bytes(out)


def parse_batch(body: bytes) -> Batch:
    """Decode and validate; any problem is a 422 with the reason."""
    try:
        batch = decode_batch(body)
    except (msgspec.MsgspecError, ValueError) as exc:  # invalid UTF-8 surfaces as ValueError
        raise ApiError(422, f"invalid batch: {exc}", title="Invalid batch") from exc
    problem = check_batch(batch)
    if problem:
        raise ApiError(422, f"invalid batch: {problem}", title="Invalid batch")
    return batch


async def parse_batch_async(body: bytes) -> Batch:
    if len(body) > _THREAD_THRESHOLD:
        return await asyncio.to_thread(parse_batch, body)
    return parse_batch(body)


def check_batch(batch: Batch) -> str | None:
    """The first reason this batch cannot be stored as is, or None."""
    return _check_struct(batch, "batch")


def _check_str(value: str, limit: int, required: bool, where: str) -> str | None:
    if required and not value:
        return f"{where} must not be empty"
    if len(value) > limit:
        return f"{where} is longer than {limit} characters"
    if "\x00" in value:
        return f"{where} contains a NUL character"
    try:
        value.encode()
    except UnicodeEncodeError:
        return f"{where} is not valid Unicode"
    return None


def _check_number(value: float, where: str) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} must be a finite number"
    if value < 0 or value > MAX_COUNT:
        return f"{where} must be between 0 and {MAX_COUNT}"
    return None


def _check_struct(obj: msgspec.Struct, where: str) -> str | None:
    struct = type(obj).__name__
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        key, here = (struct, name), f"{where}.{name}"
        limit = _LIMITS.get(key, _DEFAULT_STR)
        problem: str | None = None
        if value is None or isinstance(value, (bool, datetime)):
            continue
        if isinstance(value, msgspec.Struct):
            problem = _check_struct(value, here)
        elif isinstance(value, str):
            problem = _check_str(value, limit, key in _REQUIRED, here)
        elif isinstance(value, (int, float)):
            problem = _check_number(value, here)
        elif isinstance(value, bytes):
            problem = _check_registers(value, here)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, msgspec.Struct):
                    problem = _check_struct(item, f"{here}[{i}]")
                else:
                    problem = _check_str(str(item), limit, True, f"{here}[{i}]")
                if problem:
                    break
        elif isinstance(value, dict) and key == ("AlertEvent", "evidence"):
            encoded = msgspec.json.encode(value)
            if len(encoded) > _MAX_EVIDENCE_BYTES:
                problem = f"{here} is larger than {_MAX_EVIDENCE_BYTES} bytes"
            elif b"\\u0000" in encoded:
                problem = f"{here} contains a NUL character"
        elif isinstance(value, dict):
            for k, v in value.items():
                problem = _check_str(k, limit, True, f"{here} key") or _check_number(v, f"{here}[{k!r}]")
                if problem:
                    break
        if problem:
            return problem
    if struct in ("EndpointSummary", "AlertEndpoint") and not _METHOD.fullmatch(obj.method):  # type: ignore[attr-defined]
        return f"{where}.method must be an HTTP method token"
    if struct == "AlertEvent" and obj.severity not in SEVERITIES:  # type: ignore[attr-defined]
        return f"{where}.severity must be one of {', '.join(SEVERITIES)}"
    if struct == "EndpointSummary" and len(obj.param_sketches) > MAX_SKETCHES_PER_SUMMARY:  # type: ignore[attr-defined]
        return f"{where}.param_sketches has more than {MAX_SKETCHES_PER_SUMMARY} sketches"
    if struct == "ParamSketch" and not 0 < obj.window_seconds <= _MAX_SKETCH_WINDOW:  # type: ignore[attr-defined]
        return f"{where}.window_seconds must be over 0 and at most {_MAX_SKETCH_WINDOW:.0f}"
    return None


def _check_registers(value: bytes, where: str) -> str | None:
    """HyperLogLog registers of ``sensor.behaviour.sketches.Hll(10)``: merged by register-wise max,
    so a wrong length cannot merge and a rank past the hash width would inflate every estimate."""
    if len(value) != SKETCH_REGISTERS:
        return f"{where} must be {SKETCH_REGISTERS} bytes (HyperLogLog registers), not {len(value)}"
    if max(value) > SKETCH_MAX_RANK:
        return f"{where} holds a register over {SKETCH_MAX_RANK}"
    return None
