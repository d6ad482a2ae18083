"""One bounded walk over what an exchange carries: path segments, query, headers and both bodies.

Every payload is reduced to *leaves* ``(location, path_template, key, value)``: a scalar value with
where it sits (``$.users[*].card_number``, a query parameter name, a header name) and the name it
sits under. Data classification consumes leaves now; signature matching will consume the same
leaves later, so nothing here knows about data types.

Bounded by construction, never raising: depth, object members, array elements (sampled to the first
N, and the stats say so), string length inspected and the number of leaves are all capped, each cap
counted in ``WalkStats``. Invalid UTF-8, absurd nesting, 100,000-element arrays, megabyte strings
and 100,000-digit numbers produce fewer leaves, not exceptions. A body *prefix* (the capture kept
only the first N bytes) is still walked: JSON that no longer parses is read by a tolerant tokenizer
that keeps the path stack, so the data at the start of a large response is not lost.

XML is parsed with the standard library's expat only after refusing any DOCTYPE / ENTITY
declaration, which makes entity expansion (billion laughs, external entities) impossible.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import parse_qsl, unquote

import msgspec

if TYPE_CHECKING:
    from multidict import MultiMapping

    from sensor.exchange import Exchange

__all__ = [
    "DEFAULT_LIMITS",
    "Leaf",
    "WalkLimits",
    "WalkStats",
    "exchange_leaves",
    "media_type",
    "walk_body",
    "walk_exchange",
    "walk_form",
    "walk_headers",
    "walk_json",
    "walk_multipart",
    "walk_path",
    "walk_query",
    "walk_text",
    "walk_xml",
]


class Leaf(NamedTuple):
    location: str  # "path" | "query" | "header" | "request_body" | "response_body"
    path: str  # template: "$.users[*].card_number", a parameter or header name, "path[2]"
    key: str  # the name the value sits under ("card_number"); "" when there is none
    value: str  # the scalar as text, at most ``WalkLimits.max_string`` characters


@dataclass(frozen=True, slots=True)
class WalkLimits:
    max_depth: int = 32  # containers nested deeper are not entered
    max_keys: int = 10_000  # object members / tokens visited per payload
    array_sample: int = 32  # elements of each array looked at
    max_string: int = 4096  # characters of one value inspected
    max_leaves: int = 4096  # leaves produced per payload
    max_params: int = 256  # query / form / header / multipart fields per payload
    max_segments: int = 32  # URL path segments
    min_int_digits: int = 7  # shorter integers carry no data worth a leaf (counts, amounts, flags)


DEFAULT_LIMITS: Final = WalkLimits()


class WalkStats:
    """What the walk skipped and why. Counters only, never values."""

    __slots__ = (
        "arrays_sampled",
        "body_prefix",
        "depth_truncated",
        "doctype_rejected",
        "keys_truncated",
        "leaves",
        "leaves_truncated",
        "parse_fallback",
        "records",
        "records_partial",
        "records_path",
        "skipped_bodies",
        "strings_truncated",
    )

    def __init__(self) -> None:
        self.leaves = 0
        self.arrays_sampled = 0  # arrays cut to the sample size
        self.depth_truncated = 0  # containers not entered because of depth
        self.keys_truncated = 0  # payloads that hit the member / token cap
        self.leaves_truncated = 0  # payloads that hit the leaf cap
        self.strings_truncated = 0  # values longer than max_string
        self.body_prefix = 0  # bodies seen only as a prefix
        self.parse_fallback = 0  # payloads read by a tolerant scan instead of a parser
        self.doctype_rejected = 0  # XML refused because it declared a DOCTYPE / ENTITY
        self.skipped_bodies = 0  # binary or content-encoded bodies not walked
        # The response body's largest JSON array: its element count (the true length, not the sample;
        # 0 = JSON without arrays, -1 = no JSON response body) and path template ("$.users[*]").
        # ``records_partial``: a lower bound (a body prefix, an unparsable body or the leaf cap).
        self.records = -1
        self.records_path = ""
        self.records_partial = False

    @property
    def sampled(self) -> bool:
        return self.arrays_sampled > 0

    @property
    def truncated(self) -> bool:
        return bool(
            self.depth_truncated
            or self.keys_truncated
            or self.leaves_truncated
            or self.strings_truncated
            or self.body_prefix
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)}" for name in sorted(self.__slots__))
        return f"WalkStats({fields})"


def media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


# --------------------------------------------------------------------------------------------------
# Path templates

_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}", re.ASCII)
# Member name -> ".name" / '["odd name"]'. Keys repeat across bodies (same API, same schema), so the
# segment is built once per distinct key; the cache is cleared when full to stay bounded.
_SEGMENTS: dict[str, str] = {}
_SEGMENT_CACHE_MAX: Final = 8192
_MAX_KEY: Final = 128


def _segment(key: str) -> str:
    seg = _SEGMENTS.get(key)
    if seg is None:
        # json.dumps escapes quotes, control characters and lone surrogates (ensure_ascii).
        seg = "." + key if _IDENT.fullmatch(key) else "[" + json.dumps(key[:_MAX_KEY]) + "]"
        if len(_SEGMENTS) >= _SEGMENT_CACHE_MAX:
            _SEGMENTS.clear()
        _SEGMENTS[key] = seg
    return seg


# --------------------------------------------------------------------------------------------------
# JSON

_json_decoder: Final = msgspec.json.Decoder()
_DECODE_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError, ValueError)


def walk_json(
    data: bytes | str,
    location: str,
    limits: WalkLimits = DEFAULT_LIMITS,
    stats: WalkStats | None = None,
    *,
    complete: bool = True,
) -> Iterator[Leaf]:
    """Leaves of a JSON document. An incomplete or unparsable document (truncated prefix, invalid
    UTF-8, nesting past the decoder's recursion limit, numbers out of range) falls back to the
    tolerant tokenizer. A parsed document is walked eagerly (the hot path); the fallback lazily."""
    st = stats if stats is not None else WalkStats()
    if complete:
        try:
            doc = _json_decoder.decode(data)
        except _DECODE_ERRORS:
            pass
        else:
            return _walk_doc(doc, location, limits, st)
    st.parse_fallback += 1
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return _walk_json_tolerant(text, location, limits, st)


def _walk_doc(doc: object, location: str, limits: WalkLimits, st: WalkStats) -> Iterator[Leaf]:
    """Leaves of a decoded document, in document order."""
    out: list[Leaf] = []
    walker = _DocWalker(location, limits, st, out)
    full = False
    try:
        if isinstance(doc, dict):
            walker.obj(doc, "$", 1)
        elif isinstance(doc, list):
            walker.arr(doc, "$[*]", "", 1)
        else:
            walker.scalar(doc, "$", "")
    except _Full:
        st.leaves_truncated += 1
        full = True
    st.leaves += len(out)
    if location == "response_body":
        st.records, st.records_path, st.records_partial = walker.top_n, walker.top_path, full
    return iter(out)


# Building the tuple directly skips the NamedTuple's Python-level __new__ (one frame per leaf).
_new_leaf: Final = tuple.__new__


class _Full(Exception):
    """The leaf cap was reached: unwinds the walk (at most ``max_depth`` frames)."""


class _DocWalker:
    """Recursive walk into a list: recursion is bounded by ``max_depth`` (checked before entering a
    container), and appending to a list is several times cheaper than a chain of generators. This is
    the sensor's hot path, hence the exact-type checks (``type(v) is str``) instead of isinstance."""

    __slots__ = (
        "keys_left",
        "limit",
        "limits",
        "location",
        "max_depth",
        "max_string",
        "min_int",
        "out",
        "sample",
        "st",
        "top_n",
        "top_path",
    )

    def __init__(self, location: str, limits: WalkLimits, st: WalkStats, out: list[Leaf]) -> None:
        self.location = location
        self.limits = limits
        self.st = st
        self.out = out
        self.max_depth = limits.max_depth
        self.max_string = limits.max_string
        self.sample = limits.array_sample
        self.min_int = 10 ** (limits.min_int_digits - 1)
        self.keys_left = limits.max_keys
        self.limit = len(out) + limits.max_leaves  # the leaf cap, as a length of ``out``
        self.top_n = 0  # length of the largest array met (its true length: len() before sampling)
        self.top_path = ""

    def _leaf(self, path: str, key: str, value: str) -> None:
        if len(self.out) >= self.limit:
            raise _Full
        self.out.append(_new_leaf(Leaf, (self.location, path, key, value)))

    def scalar(self, v: object, path: str, key: str) -> None:
        t = type(v)
        if t is str:
            s = v if isinstance(v, str) else ""
            if s:
                if len(s) > self.max_string:
                    self.st.strings_truncated += 1
                    s = s[: self.max_string]
                self._leaf(path, key, s)
        elif t is int and isinstance(v, int) and (v >= self.min_int or v <= -self.min_int):
            self._leaf(path, key, str(v))  # msgspec decodes 64-bit integers only: str() is cheap

    def obj(self, node: dict[str, Any], path: str, depth: int) -> None:
        # Values are Any: the exact type() checks below replace isinstance calls (one per value).
        n = len(node)
        if n > self.keys_left:
            self.st.keys_truncated += 1
            if self.keys_left <= 0:
                return
            node = dict(list(node.items())[: self.keys_left])
            n = len(node)
        self.keys_left -= n
        seg = _SEGMENTS
        min_int = self.min_int
        max_string = self.max_string
        out = self.out
        append = out.append
        limit = self.limit
        location = self.location
        for k, v in node.items():
            if v is None or v is True or v is False:
                continue  # the commonest values in API JSON, and never data
            t = type(v)
            if t is str:
                if v:
                    text = v
                    if len(text) > max_string:
                        self.st.strings_truncated += 1
                        text = text[:max_string]
                    if len(out) >= limit:
                        raise _Full
                    append(_new_leaf(Leaf, (location, path + (seg.get(k) or _segment(k)), k, text)))
            elif t is dict:
                if v:
                    if depth >= self.max_depth:
                        self.st.depth_truncated += 1
                    else:
                        self.obj(v, path + (seg.get(k) or _segment(k)), depth + 1)
            elif t is list:
                if v:
                    if depth >= self.max_depth:
                        self.st.depth_truncated += 1
                    else:
                        self.arr(v, path + (seg.get(k) or _segment(k)) + "[*]", k, depth + 1)
            elif t is int and (v >= min_int or v <= -min_int):
                if len(out) >= limit:
                    raise _Full
                append(_new_leaf(Leaf, (location, path + (seg.get(k) or _segment(k)), k, str(v))))

    def arr(self, node: list[Any], path: str, key: str, depth: int) -> None:
        n = len(node)
        if n > self.top_n:
            self.top_n = n
            self.top_path = path
        if n > self.sample:
            self.st.arrays_sampled += 1
            node = node[: self.sample]
        for v in node:
            t = type(v)
            if t is dict:
                if v:
                    if depth >= self.max_depth:
                        self.st.depth_truncated += 1
                    else:
                        self.obj(v, path, depth + 1)
            elif t is list:
                if v:
                    if depth >= self.max_depth:
                        self.st.depth_truncated += 1
                    else:
                        self.arr(v, path + "[*]", key, depth + 1)
            elif t is str or t is int:
                self.scalar(v, path, key)


# The tolerant tokenizer: strings (the closing quote may be missing at the end of a prefix),
# punctuation, numbers and literals. The unrolled string pattern runs in linear time on huge strings.
_TOKEN: Final = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"?|([{}\[\]:,])|(-?[0-9][0-9.eE+-]*)|[A-Za-z]+|\S', re.DOTALL)


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    try:
        out = json.loads('"' + raw + '"')
    except ValueError:
        return raw
    return out if isinstance(out, str) else raw


class _Frame:
    __slots__ = ("count", "deep", "is_obj", "key", "path", "want_key")

    def __init__(self, is_obj: bool, path: str, key: str, deep: bool) -> None:
        self.is_obj = is_obj
        self.path = path
        self.key = key  # member name the container sits under (array elements inherit it)
        self.want_key = is_obj
        self.count = 0  # array elements started so far
        self.deep = deep  # past max_depth: tracked for structure, produces no leaves


def _walk_json_tolerant(text: str, location: str, limits: WalkLimits, st: WalkStats) -> Iterator[Leaf]:
    """Best-effort leaves of a JSON prefix or malformed JSON, keeping path templates. For a response
    body, the largest array's element count is recorded as a lower bound (elements before the cut)."""
    stack: list[_Frame] = []
    if location != "response_body":
        yield from _tolerant_leaves(text, location, limits, st, stack=stack, largest=None)
        return
    largest = _Largest()
    try:
        yield from _tolerant_leaves(text, location, limits, st, stack=stack, largest=largest)
    finally:
        n, path = largest.n, largest.path
        for frame in stack:  # arrays left open by the cut: ``count`` elements were completed
            if not frame.is_obj and frame.count > n:
                n, path = frame.count, frame.path + "[*]"
        st.records, st.records_path, st.records_partial = n, path, True


class _Largest:
    """The largest closed array of a tolerant walk."""

    __slots__ = ("n", "path")

    def __init__(self) -> None:
        self.n = 0
        self.path = ""


def _tolerant_leaves(
    text: str, location: str, limits: WalkLimits, st: WalkStats, *, stack: list[_Frame], largest: _Largest | None
) -> Iterator[Leaf]:
    tokens_left = limits.max_keys * 4
    leaves_left = limits.max_leaves
    min_digits = limits.min_int_digits
    sample = limits.array_sample
    for m in _TOKEN.finditer(text):
        tokens_left -= 1
        if tokens_left < 0:
            st.keys_truncated += 1
            return
        top = stack[-1] if stack else None
        punct = m.group(2)
        if punct is not None:
            if punct in "{[":
                if top is None:
                    path, key, deep = "$", "", False
                elif top.is_obj:
                    path, key, deep = top.path + _segment(top.key), top.key, top.deep
                else:
                    path, key, deep = top.path + "[*]", top.key, top.deep or top.count > sample
                if len(stack) >= limits.max_depth and not deep:
                    st.depth_truncated += 1
                    deep = True
                if len(stack) < 100_000:
                    stack.append(_Frame(punct == "{", path, key, deep))
            elif punct in "}]":
                if stack:
                    done = stack.pop()
                    # a closed array with n > 1 elements has n - 1 commas (one element: counted as 0)
                    if largest is not None and done.count >= largest.n and done.count and not done.is_obj:
                        largest.n, largest.path = done.count + 1, done.path + "[*]"
            elif punct == ",":
                if top is not None:
                    if top.is_obj:
                        top.want_key = True
                    else:
                        top.count += 1
                        if top.count == sample:
                            st.arrays_sampled += 1
            elif punct == ":" and top is not None:
                top.want_key = False
            continue
        raw = m.group(1)
        num = m.group(3)
        if raw is None and num is None:
            continue  # true / false / null / stray characters
        if raw is not None and top is not None and top.is_obj and top.want_key:
            top.key = _unescape(raw[: _MAX_KEY * 2])[:_MAX_KEY]
            continue
        if top is not None and (top.deep or (not top.is_obj and top.count >= sample)):
            continue
        if raw is not None:
            if len(raw) > limits.max_string * 2:
                st.strings_truncated += 1
                raw = raw[: limits.max_string * 2]
            value = _unescape(raw)
            if len(value) > limits.max_string:
                st.strings_truncated += 1
                value = value[: limits.max_string]
            if not value:
                continue
        else:
            assert num is not None
            digits = len(num) - (num[0] == "-")
            if digits < min_digits or not num.lstrip("-").isdigit():
                continue
            value = num[: limits.max_string]
        if top is None:
            path, key = "$", ""
        elif top.is_obj:
            path, key = top.path + _segment(top.key), top.key
        else:
            path, key = top.path + "[*]", top.key
        if leaves_left <= 0:
            st.leaves_truncated += 1
            return
        leaves_left -= 1
        st.leaves += 1
        yield Leaf(location, path, key, value)


# --------------------------------------------------------------------------------------------------
# Forms, query strings, multipart


def _pairs(text: str, limits: WalkLimits, st: WalkStats) -> list[tuple[str, str]]:
    if "%" not in text and "+" not in text and text.count("&") < limits.max_params:
        # Nothing to decode (most query strings): what parse_qsl returns, without its per-field
        # unquoting and checks -- fields with "=" and a non-empty value, in order.
        return [(name, value) for name, eq, value in (f.partition("=") for f in text.split("&")) if eq and value]
    try:
        return parse_qsl(text, keep_blank_values=False, max_num_fields=limits.max_params)
    except ValueError:  # more fields than the cap: parse only the first ones
        st.keys_truncated += 1
        head = "&".join(text.split("&", limits.max_params)[: limits.max_params])
        try:
            return parse_qsl(head, keep_blank_values=False)
        except ValueError:
            return []


def walk_form(
    data: bytes | str,
    location: str,
    limits: WalkLimits = DEFAULT_LIMITS,
    stats: WalkStats | None = None,
) -> Iterator[Leaf]:
    """Leaves of an ``application/x-www-form-urlencoded`` body or a query string; path = name."""
    out: list[Leaf] = []
    _form_leaves(out, data, location, limits, stats if stats is not None else WalkStats())
    return iter(out)


# The per-request walks (path, query, headers) append to the caller's list instead of being
# generators: compiled with mypyc, a generator costs an object, a state machine and a protocol call
# per leaf; the exchange walk extends one list anyway. The public walk_* keep their iterator shape.
def _form_leaves(out: list[Leaf], data: bytes | str, location: str, limits: WalkLimits, st: WalkStats) -> None:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    _named_values(out, _pairs(text, limits, st), location, limits, st)


def _named_values(
    out: list[Leaf], pairs: list[tuple[str, str]], location: str, limits: WalkLimits, st: WalkStats
) -> None:
    leaves_left = limits.max_leaves
    for name, raw in pairs:
        if not raw:
            continue
        value = raw
        if len(value) > limits.max_string:
            st.strings_truncated += 1
            value = value[: limits.max_string]
        if leaves_left <= 0:
            st.leaves_truncated += 1
            return
        leaves_left -= 1
        st.leaves += 1
        key = name[:_MAX_KEY]
        out.append(_new_leaf(Leaf, (location, key, key, value)))


def walk_query(
    query_string: str, limits: WalkLimits = DEFAULT_LIMITS, stats: WalkStats | None = None
) -> Iterator[Leaf]:
    return walk_form(query_string, "query", limits, stats)


_CD_PARAM: Final = re.compile(r';\s*(name|filename)\*?="?([^";]*)"?', re.IGNORECASE)
_TEXTUAL: Final = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


def walk_multipart(
    data: bytes,
    boundary: str,
    location: str,
    limits: WalkLimits = DEFAULT_LIMITS,
    stats: WalkStats | None = None,
) -> Iterator[Leaf]:
    """Leaves of a ``multipart/form-data`` body: one per text field (path = field name). Uploaded
    files are walked only when textual; a part cut by the prefix is still read."""
    st = stats if stats is not None else WalkStats()
    if not boundary:
        return
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    pairs: list[tuple[str, str]] = []
    for n, part in enumerate(data.split(delimiter)):
        if n == 0:
            continue  # preamble
        if n > limits.max_params:
            st.keys_truncated += 1
            break
        if part.startswith(b"--"):
            break  # closing delimiter
        head, sep, body = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = part.partition(b"\n\n")
            if not sep:
                continue
        name = ""
        ctype = ""
        filename = False
        for line in head.decode("utf-8", "replace").splitlines():
            lname, _, lvalue = line.partition(":")
            lname = lname.strip().lower()
            if lname == "content-disposition":
                for pm in _CD_PARAM.finditer(lvalue):
                    if pm.group(1).lower() == "name":
                        name = pm.group(2)
                    else:
                        filename = True
            elif lname == "content-type":
                ctype = lvalue.strip().lower()
        if filename and ctype and not ctype.startswith(_TEXTUAL):
            continue  # a binary upload
        if body.endswith(b"\r\n"):
            body = body[:-2]
        pairs.append((name, body[: limits.max_string * 4].decode("utf-8", "replace")))
    leaves: list[Leaf] = []
    _named_values(leaves, pairs, location, limits, st)
    yield from leaves


# --------------------------------------------------------------------------------------------------
# XML

_DOCTYPE: Final = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1][:_MAX_KEY]


def walk_xml(
    data: bytes,
    location: str,
    limits: WalkLimits = DEFAULT_LIMITS,
    stats: WalkStats | None = None,
) -> Iterator[Leaf]:
    """Leaves of an XML document: element text (``/a/b/c``) and attributes (``/a/b/@id``).

    Any DOCTYPE or ENTITY declaration refuses the parse (no entity can then be defined, so none can
    be expanded); such a body is read as plain text instead. A truncated or malformed document
    yields the leaves parsed before the error."""
    st = stats if stats is not None else WalkStats()
    if _DOCTYPE.search(data) is not None:
        st.doctype_rejected += 1
        yield from walk_text(data, location, limits, st)
        return
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    names: list[str] = []
    leaves_left = limits.max_leaves
    events_left = limits.max_keys
    try:
        parser.feed(data)
        events = parser.read_events()
    except ET.ParseError:
        st.parse_fallback += 1
        events = parser.read_events()
    try:
        for item in events:
            if len(item) != 2:
                continue
            event, elem = item  # ("start" | "end", Element): the only events asked for
            events_left -= 1
            if events_left < 0:
                st.keys_truncated += 1
                return
            if not isinstance(elem, ET.Element):
                continue
            if event == "start":
                names.append(_local(elem.tag))
                if len(names) > limits.max_depth:
                    st.depth_truncated += 1
                    continue
                for aname, avalue in list(elem.attrib.items())[: limits.max_params]:
                    if not avalue.strip():
                        continue
                    if leaves_left <= 0:
                        st.leaves_truncated += 1
                        return
                    leaves_left -= 1
                    st.leaves += 1
                    path = "/" + "/".join(names) + "/@" + _local(aname)
                    yield Leaf(location, path, _local(aname), avalue[: limits.max_string])
                continue
            text = elem.text
            if len(names) > limits.max_depth:
                pass
            elif text is not None and text.strip():
                if leaves_left <= 0:
                    st.leaves_truncated += 1
                    return
                if len(text) > limits.max_string:
                    st.strings_truncated += 1
                leaves_left -= 1
                st.leaves += 1
                yield Leaf(location, "/" + "/".join(names), names[-1], text.strip()[: limits.max_string])
            if names:
                names.pop()
            elem.clear()  # keep memory bounded by depth, not by document size
    except ET.ParseError:
        st.parse_fallback += 1


# --------------------------------------------------------------------------------------------------
# Plain text


def walk_text(
    data: bytes | str,
    location: str,
    limits: WalkLimits = DEFAULT_LIMITS,
    stats: WalkStats | None = None,
) -> Iterator[Leaf]:
    """Leaves of plain text: chunks of at most ``max_string`` characters, cut at line ends where
    possible so that a value is rarely split. Path and key are empty."""
    st = stats if stats is not None else WalkStats()
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    size = limits.max_string
    pos = 0
    leaves_left = limits.max_leaves
    while pos < len(text):
        end = pos + size
        if end < len(text):
            cut = text.rfind("\n", pos + size // 2, end)
            if cut > 0:
                end = cut + 1
        chunk = text[pos:end]
        pos = end
        if not chunk.strip():
            continue
        if leaves_left <= 0:
            st.leaves_truncated += 1
            return
        leaves_left -= 1
        st.leaves += 1
        yield Leaf(location, "", "", chunk)


# --------------------------------------------------------------------------------------------------
# The exchange


def walk_path(path: str, limits: WalkLimits = DEFAULT_LIMITS, stats: WalkStats | None = None) -> Iterator[Leaf]:
    """URL path segments: path ``path[i]`` (0-based), key = the previous segment (``/ssn/{value}``
    makes "ssn" the key hint of the value)."""
    out: list[Leaf] = []
    _path_leaves(out, path, limits, stats if stats is not None else WalkStats())
    return iter(out)


def _path_leaves(out: list[Leaf], path: str, limits: WalkLimits, st: WalkStats) -> None:
    segments = path.split("/", limits.max_segments + 1)
    previous = ""
    index = 0
    for raw in segments:
        if not raw:
            continue
        if index >= limits.max_segments:
            st.keys_truncated += 1
            return
        value = unquote(raw[: limits.max_string])
        st.leaves += 1
        out.append(_new_leaf(Leaf, ("path", f"path[{index}]", previous[:_MAX_KEY], value)))
        previous = value
        index += 1


_SKIP_HEADERS: Final = frozenset(
    {
        "content-length", "content-type", "content-encoding", "transfer-encoding", "accept",
        "accept-encoding", "accept-language", "connection", "host", "date", "cache-control", "etag",
        "last-modified", "vary", "server", "user-agent", "referer", "origin", "pragma", "expires",
        "if-none-match", "if-modified-since", "keep-alive", "upgrade", "via", "age", "location",
    }
)  # fmt: skip


def walk_headers(
    headers: object, limits: WalkLimits = DEFAULT_LIMITS, stats: WalkStats | None = None
) -> Iterator[Leaf]:
    """Header values as leaves (path and key = lower-cased name). Cookie and Set-Cookie are split
    into one leaf per cookie (path ``cookie.NAME``, key = the cookie name). Headers that never carry
    data (framing, caching, negotiation) are skipped."""
    out: list[Leaf] = []
    _header_leaves(out, headers, limits, stats if stats is not None else WalkStats())
    return iter(out)


def _header_leaves(out: list[Leaf], headers: object, limits: WalkLimits, st: WalkStats) -> None:
    items = getattr(headers, "items", None)
    if items is None:
        return
    count = 0
    for name, raw in items():
        count += 1
        if count > limits.max_params:
            st.keys_truncated += 1
            return
        lname = str(name).lower()[:_MAX_KEY]
        if lname in _SKIP_HEADERS or not raw:
            continue
        value = str(raw)[: limits.max_string]
        if lname in ("cookie", "set-cookie"):
            parts = value.split(";", limits.max_params) if lname == "cookie" else value.split(";", 1)[:1]
            for part in parts[: limits.max_params]:
                cname, eq, cvalue = part.partition("=")
                cvalue = cvalue.strip().strip('"')
                if eq and cvalue:
                    cname = cname.strip()[:_MAX_KEY]
                    st.leaves += 1
                    out.append(_new_leaf(Leaf, ("header", "cookie." + cname, cname, cvalue)))
            continue
        st.leaves += 1
        out.append(_new_leaf(Leaf, ("header", lname, lname, value)))


_BINARY_PREFIXES: Final = ("image/", "audio/", "video/", "font/")
_BINARY_TYPES: Final = frozenset(
    {
        "application/octet-stream", "application/pdf", "application/zip", "application/gzip",
        "application/grpc", "application/protobuf", "application/x-protobuf", "application/wasm",
    }
)  # fmt: skip


def walk_body(
    body: bytes,
    content_type: str | None,
    location: str,
    limits: WalkLimits = DEFAULT_LIMITS,
    stats: WalkStats | None = None,
    *,
    complete: bool = True,
    content_encoding: str | None = None,
) -> Iterator[Leaf]:
    """Leaves of one body, dispatched on its media type (sniffed when there is none). Dispatches
    eagerly and returns the chosen walker's iterator, so leaves do not pass through an extra
    generator frame each."""
    st = stats if stats is not None else WalkStats()
    if not body:
        return iter(())
    if not complete:
        st.body_prefix += 1
    if content_encoding and content_encoding.strip().lower() not in ("identity", ""):
        st.skipped_bodies += 1  # compressed bytes: nothing textual to read
        return iter(())
    mtype = media_type(content_type)
    if not mtype:
        head = body[:64].lstrip()
        if head[:1] in (b"{", b"["):
            mtype = "application/json"
        elif head[:1] == b"<":
            mtype = "application/xml"
        else:
            mtype = "text/plain"
    if mtype == "application/json" or mtype.endswith("+json"):
        return walk_json(body, location, limits, st, complete=complete)
    if mtype == "application/x-www-form-urlencoded":
        return walk_form(body, location, limits, st)
    if mtype == "multipart/form-data":
        boundary = ""
        for param in (content_type or "").split(";")[1:]:
            pname, _, pvalue = param.strip().partition("=")
            if pname.lower() == "boundary":
                boundary = pvalue.strip().strip('"')
        return walk_multipart(body, boundary, location, limits, st)
    if mtype in ("application/xml", "text/xml") or mtype.endswith("+xml"):
        return walk_xml(body, location, limits, st)
    if mtype.startswith(_BINARY_PREFIXES) or mtype in _BINARY_TYPES:
        st.skipped_bodies += 1
        return iter(())
    return walk_text(body, location, limits, st)


def walk_exchange(
    exchange: Exchange, limits: WalkLimits = DEFAULT_LIMITS, stats: WalkStats | None = None
) -> Iterator[Leaf]:
    """All leaves of an exchange: path segments, query, request headers, request body, response
    headers and response body (only when a response was received)."""
    return iter(exchange_leaves(exchange, limits, stats))


def _walk_message_body(
    out: list[Leaf],
    body: bytes,
    full_size: int,
    headers: MultiMapping[str],
    location: str,
    *,
    limits: WalkLimits,
    stats: WalkStats,
) -> None:
    """One message's body, read by its own Content-Type and Content-Encoding; a prefix shorter than
    the full size is walked as incomplete."""
    if body:
        out.extend(
            walk_body(
                body,
                headers.get("Content-Type"),
                location,
                limits,
                stats,
                complete=len(body) >= full_size,
                content_encoding=headers.get("Content-Encoding"),
            )
        )


def exchange_leaves(
    exchange: Exchange, limits: WalkLimits = DEFAULT_LIMITS, stats: WalkStats | None = None
) -> list[Leaf]:
    """``walk_exchange`` as a list (what classification consumes: one buffer per exchange)."""
    st = stats if stats is not None else WalkStats()
    out: list[Leaf] = []
    _path_leaves(out, exchange.path, limits, st)
    if exchange.query_string:
        _form_leaves(out, exchange.query_string, "query", limits, st)
    _header_leaves(out, exchange.request_headers, limits, st)
    _walk_message_body(
        out, exchange.request_body, exchange.request_body_size, exchange.request_headers, "request_body",
        limits=limits, stats=st,
    )
    if exchange.status:
        _header_leaves(out, exchange.response_headers, limits, st)
        _walk_message_body(
            out, exchange.response_body, exchange.response_body_size, exchange.response_headers, "response_body",
            limits=limits, stats=st,
        )
    return out
