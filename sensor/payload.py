"""Reading request payloads for parameter names (never values leave this module).

Bounded by construction: only the inspected body prefix is read, only the first ``limit`` names are
kept, and a body that is not valid JSON / form data yields no names rather than an error.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import msgspec

_json_decoder = msgspec.json.Decoder()


def media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def body_param_names(content_type: str | None, body: bytes, *, complete: bool, limit: int = 64) -> tuple[str, ...]:
    """Top-level field names of a JSON object or a form-urlencoded body.

    ``complete`` says whether ``body`` is the whole body; a truncated JSON prefix cannot be parsed,
    so it yields nothing (summaries then simply lack those names).
    """
    if not body:
        return ()
    mtype = media_type(content_type)
    if mtype == "application/x-www-form-urlencoded":
        if not complete:
            body = body.rsplit(b"&", 1)[0]
        try:
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=limit)
        except ValueError:  # more fields than limit: keep what we can cheaply
            pairs = parse_qsl(body[:4096].decode("utf-8", "replace"), keep_blank_values=True)[:limit]
        return tuple(dict.fromkeys(name for name, _ in pairs))[:limit]
    if complete and (mtype == "application/json" or mtype.endswith("+json")):
        try:
            doc = _json_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return ()
        if isinstance(doc, dict):
            return tuple(str(k) for k in list(doc)[:limit])
    return ()
