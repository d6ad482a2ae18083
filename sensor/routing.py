"""URL -> endpoint template: OpenAPI operations when known, inference otherwise.

An endpoint is (api, method, path template). ``Router.route`` answers the template for a request:

1. **Spec operations** (``load_openapi``) are held in a segment trie. Matching walks the trie once,
   preferring a literal segment over a templated segment over a plain ``{param}`` and
   backtracking only on dead ends, so ``/users/me`` beats ``/users/{id}`` and the cost does not grow
   with the number of operations. A path that matches a spec template under a method the spec does
   not declare keeps the spec's template but ``from_spec=False`` (a shadow method).
2. **Inference** for everything else (the shadow endpoints): the path is normalised, and each
   segment that *looks like a value* (number, UUID, ULID, hex hash, ISO date, e-mail, random token)
   becomes a parameter named by its type. These rules are pure functions of the segment, so every
   sensor replica and every restart derives the same template for the same path.
3. **Learned cardinality**: a literal position under one parent template that has shown more than
   ``cardinality_threshold`` distinct values becomes ``{param}`` (see ``Router._infer``).

Everything is bounded: an LRU of raw path -> answer, and the learned tree capped at
``max_templates`` nodes (beyond it, new literals become ``{param}`` and ``overflow`` counts them).
The router is not thread-safe; it lives on the sensor's event loop.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote_plus

from sensor.observation import Route

__all__ = [
    "Router",
    "base_path_of",
    "classify_segment",
    "join_base_path",
    "normalise_path",
    "query_param_names",
]

HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

# Bounds on what one path can cost or add to the learned state.
MAX_SEGMENTS: Final = 32  # deeper paths end in "/{rest}"
MAX_LITERAL: Final = 128  # a longer non-value segment is data, not a resource name -> {param}

# --------------------------------------------------------------------------------------------------
# Segment types (the deterministic inference rules)

_HEX: Final = frozenset("0123456789abcdefABCDEF")
_DIGITS: Final = frozenset("0123456789")
_CROCKFORD: Final = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz")
_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+=")
_HASH_LENGTHS: Final = frozenset({32, 40, 64, 96, 128})  # md5, sha1, sha256, sha384, sha512
_TOKEN_MIN: Final = 16
# Share of adjacent alphanumeric pairs that switch class (lower / upper / digit). Random base62
# strings switch ~62% of the time and base36 ~40%; slugs like "productname2024v2final" or
# "release-notes-2024-q1" stay under 20%. 0.25 keeps almost all random tokens of 16+ chars
# (~90% of base36 ones, >99.9% of base62 ones) and the misses are caught by cardinality.
_TOKEN_SWITCH_RATIO: Final = 0.25


def _is_date(seg: str) -> bool:
    """ISO 8601 calendar date, optionally followed by a time: ``2024-01-31``, ``2024-01-31T10:00Z``."""
    if len(seg) < 10 or seg[4] != "-" or seg[7] != "-":
        return False
    y, m, d = seg[0:4], seg[5:7], seg[8:10]
    if not (y.isdigit() and m.isdigit() and d.isdigit() and y.isascii() and m.isascii() and d.isascii()):
        return False
    if not (1 <= int(m) <= 12 and 1 <= int(d) <= 31):
        return False
    return len(seg) == 10 or seg[10] in "Tt "


def _is_email(seg: str) -> bool:
    at = seg.find("@")
    if at <= 0:
        return False
    domain = seg[at + 1 :]
    dot = domain.rfind(".")
    return 0 < dot < len(domain) - 1 and " " not in seg and "@" not in domain


def _is_token(seg: str) -> bool:
    if len(seg) < _TOKEN_MIN or not _TOKEN_CHARS.issuperset(seg):
        return False
    switches = pairs = 0
    prev = -1
    has_digit = has_alpha = False
    for c in seg:
        if "0" <= c <= "9":
            cls = 0
            has_digit = True
        elif "a" <= c <= "z":
            cls = 1
            has_alpha = True
        elif "A" <= c <= "Z":
            cls = 2
            has_alpha = True
        else:
            continue  # separators neither break nor make a switch
        if prev >= 0:
            pairs += 1
            if cls != prev:
                switches += 1
        prev = cls
    return has_digit and has_alpha and pairs > 0 and switches >= _TOKEN_SWITCH_RATIO * pairs


def classify_segment(seg: str) -> str | None:
    """The value type of a path segment (``id``, ``uuid``, ``ulid``, ``date``, ``email``, ``hash``,
    ``token``), or None for a literal. Pure and order-independent, so templates are identical
    across replicas and restarts. Ordered cheapest-rejecting first: most segments are short words."""
    if seg.isdigit() and seg.isascii():
        return "id"
    if "@" in seg:
        return "email" if _is_email(seg) else None
    n = len(seg)
    if n < 8:
        return None
    if n == 36 and seg[8] == seg[13] == seg[18] == seg[23] == "-" and _HEX.issuperset(seg.replace("-", "")):
        return "uuid"
    # ULID: 26 Crockford base32 chars, first one 0-7 (48-bit time). An all-hex one is left to the
    # hash rule: that is the likelier reading.
    if n == 26 and "0" <= seg[0] <= "7" and _CROCKFORD.issuperset(seg) and not _HEX.issuperset(seg):
        return "ulid"
    if seg[4:5] == "-" and _is_date(seg):
        return "date"
    if _HEX.issuperset(seg) and (n in _HASH_LENGTHS or not _DIGITS.isdisjoint(seg)):
        return "hash"
    if n >= _TOKEN_MIN and _is_token(seg):
        return "token"
    if _is_prefixed_id(seg):
        return "id"
    return None


def _is_prefixed_id(seg: str) -> bool:
    """Typed object ids such as ``pay_1326869``, ``ch_3MmlLrLkdIwHu7ix`` or ``cus_NffrFeUfNV2Hib``: a short
    alphabetic type prefix, ``_`` or ``-``, then either 4+ digits or 8+ alphanumerics with a digit.
    The length floor keeps version-ish literals like ``api-v2beta1`` literal."""
    for sep in ("_", "-"):
        prefix, found, rest = seg.partition(sep)
        if not found or not 1 <= len(prefix) <= 12 or not (prefix.isalpha() and prefix.isascii()):
            continue
        if not rest.isascii() or not rest.isalnum():
            continue
        if rest.isdigit():
            return len(rest) >= 4
        return len(rest) >= 8 and not _DIGITS.isdisjoint(rest)
    return False


# --------------------------------------------------------------------------------------------------
# Paths


def _segments(path: str) -> list[str]:
    """Normalised segments: ``//`` collapsed, trailing slash and ``.`` dropped, matrix parameters
    (``;jsessionid=...``) cut off each segment."""
    segs = path.split("/")
    if ";" in path:
        segs = [s.partition(";")[0] for s in segs]
    return [s for s in segs if s and s != "."]


def normalise_path(path: str) -> str:
    """The normalised form of a request path (what templates are built from)."""
    return "/" + "/".join(_segments(path))


def join_base_path(base: str, path: str) -> str:
    """A spec path under its base path, normalised: ``("/api/v3/", "/pet/{petId}")`` ->
    ``/api/v3/pet/{petId}``, ``("/ds-api", "/")`` -> ``/ds-api``. The collector's spec import must
    build endpoint paths the same way for sensor and spec endpoints to line up."""
    return normalise_path(base + "/" + path)


def base_path_of(doc: Mapping[str, Any]) -> str:
    """The base path requests carry: Swagger 2 ``basePath``, or the path of OpenAPI 3's first
    ``servers`` URL (absolute or relative, server variables replaced by their defaults)."""
    if "swagger" in doc:
        base = doc.get("basePath")
        return normalise_path(base) if isinstance(base, str) else "/"
    servers = doc.get("servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], Mapping):
        return "/"
    url = servers[0].get("url")
    if not isinstance(url, str):
        return "/"
    variables = servers[0].get("variables")
    if isinstance(variables, Mapping):
        for name, var in variables.items():
            if isinstance(var, Mapping) and "default" in var:
                url = url.replace("{" + str(name) + "}", str(var["default"]))
    scheme_sep = url.find("://")
    if scheme_sep >= 0:
        slash = url.find("/", scheme_sep + 3)
        url = url[slash:] if slash >= 0 else "/"
    for cut in ("?", "#"):
        url = url.partition(cut)[0]
    return normalise_path(url)


def query_param_names(query_string: str, limit: int = 64) -> tuple[str, ...]:
    """Distinct parameter names of a raw query string, in first-seen order, at most ``limit``
    (names only: values may be secrets or personal data)."""
    if not query_string or limit <= 0:
        return ()
    seen: dict[str, None] = {}
    # maxsplit bounds the work on a hostile query string; duplicates get some slack.
    for part in query_string.split("&", limit * 4):
        name = part.partition("=")[0]
        if not name:
            continue
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        seen[name[:MAX_LITERAL]] = None
        if len(seen) >= limit:
            break
    return tuple(seen)


# --------------------------------------------------------------------------------------------------
# Spec trie


class _SpecTerminal:
    """A spec path: its template, the operations on it, and the answer for undeclared methods."""

    __slots__ = ("fallback", "ops", "template")

    def __init__(self, api: str, template: str) -> None:
        self.template = template
        self.ops: dict[str, Route] = {}
        self.fallback = Route(api=api, template=template, name=None, from_spec=False)


class _SpecNode:
    __slots__ = ("literals", "param", "patterns", "terminal")

    def __init__(self) -> None:
        self.literals: dict[str, _SpecNode] = {}
        self.patterns: list[tuple[re.Pattern[str], str, _SpecNode]] = []  # "{name}.{ext}" segments
        self.param: _SpecNode | None = None  # a whole-segment "{name}"
        self.terminal: _SpecTerminal | None = None


_MAX_SPEC_CANDIDATES: Final = 8


def _spec_candidates(node: _SpecNode, segs: list[str], i: int, out: list[_SpecTerminal]) -> None:
    """Terminals matching ``segs[i:]`` in preference order (literal, pattern, param at each
    position, leftmost position deciding first)."""
    if i == len(segs):
        if node.terminal is not None:
            out.append(node.terminal)
        return
    seg = segs[i]
    child = node.literals.get(seg)
    if child is not None:
        _spec_candidates(child, segs, i + 1, out)
        if len(out) >= _MAX_SPEC_CANDIDATES:
            return
    for pattern, _, pchild in node.patterns:
        if pattern.fullmatch(seg):
            _spec_candidates(pchild, segs, i + 1, out)
            if len(out) >= _MAX_SPEC_CANDIDATES:
                return
    if node.param is not None:
        _spec_candidates(node.param, segs, i + 1, out)


def _segment_pattern(seg: str) -> re.Pattern[str]:
    """A regex for a segment mixing literals and parameters, e.g. ``{name}.{ext}``, ``v{version}``."""
    out: list[str] = []
    pos = 0
    while pos < len(seg):
        start = seg.find("{", pos)
        end = seg.find("}", start) if start >= 0 else -1
        if start < 0 or end < 0:
            out.append(re.escape(seg[pos:]))
            break
        out.append(re.escape(seg[pos:start]))
        out.append("[^/]+?")
        pos = end + 1
    return re.compile("".join(out))


# --------------------------------------------------------------------------------------------------
# Learned tree


class _Node:
    """One position of an inferred template. ``literals`` is None once the position collapsed."""

    __slots__ = ("literals", "params")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] | None = {}
        self.params: dict[str, _Node] = {}  # keyed by type: "id", "uuid", ..., "param"


def _subtree_size(node: _Node) -> int:
    size = 1
    stack = [node]
    while stack:
        n = stack.pop()
        children = list(n.params.values())
        if n.literals:
            children.extend(n.literals.values())
        size += len(children)
        stack.extend(children)
    return size


class _Cached:
    """A cache entry: spec candidates, or an inferred route (the cache is cleared when either the
    specs or the learned tree change)."""

    __slots__ = ("candidates", "route")

    def __init__(self, candidates: list[_SpecTerminal] | None, route: Route | None) -> None:
        self.candidates = candidates
        self.route = route


def _name(kind: str, counts: dict[str, int]) -> str:
    n = counts.get(kind, 0) + 1
    counts[kind] = n
    return "{" + kind + "}" if n == 1 else "{" + kind + str(n) + "}"


class Router:
    """Maps (method, path) to a ``Route`` for one API collection (``api``)."""

    def __init__(
        self,
        api: str,
        *,
        max_templates: int = 10000,
        cache_size: int = 65536,
        cardinality_threshold: int = 50,
    ) -> None:
        self.api = api
        self.max_templates = max(1, max_templates)
        self.cardinality_threshold = max(1, cardinality_threshold)
        self._cache_size = max(1, cache_size)
        # functools' LRU is C code (a hit ~0.1 µs; cachetools' Python LRU ~1.5 µs), every request asks
        self._lookup = functools.lru_cache(maxsize=self._cache_size)(self._resolve)
        self._spec_root = _SpecNode()
        self._spec_operations = 0
        self._root = _Node()
        self._nodes = 1  # nodes in the learned tree, root included
        self.overflow = 0  # requests whose literals became {param} because the tree was full
        self.collapses = 0  # positions turned into {param} by cardinality

    # ---- introspection (metrics, tests)

    @property
    def learned_nodes(self) -> int:
        """Positions in the learned tree (bounded by ``max_templates``)."""
        return self._nodes

    @property
    def cached_paths(self) -> int:
        return int(self._lookup.cache_info().currsize)

    @property
    def spec_operations(self) -> int:
        return self._spec_operations

    # ---- spec

    def load_openapi(self, doc: Mapping[str, Any], api: str | None = None) -> int:
        """Load the operations of an OpenAPI 3.x or Swagger 2.0 document (already parsed). Returns
        how many operations were loaded. Templates are the base path joined with the spec path,
        keeping the spec's ``{name}`` placeholders. A later document wins on the same operation."""
        paths = doc.get("paths") if isinstance(doc, Mapping) else None
        if not isinstance(paths, Mapping):
            raise ValueError("not an OpenAPI document: no 'paths' mapping")
        api_name = api or self.api
        base = base_path_of(doc)
        loaded = 0
        for raw_path, item in paths.items():
            if not isinstance(raw_path, str) or not isinstance(item, Mapping):
                continue
            template = join_base_path(base, raw_path)
            terminal = self._spec_terminal(api_name, template)
            for method, op in item.items():
                if not isinstance(method, str) or method.lower() not in HTTP_METHODS:
                    continue  # "parameters", "servers", "summary", "$ref", "x-..."
                name = None
                if isinstance(op, Mapping):
                    for key in ("operationId", "summary"):
                        value = op.get(key)
                        if isinstance(value, str) and value.strip():
                            name = value.strip()
                            break
                terminal.ops[method.upper()] = Route(api=api_name, template=template, name=name, from_spec=True)
                loaded += 1
        self._spec_operations += loaded
        self._reset_cache()
        return loaded

    def has_operation(self, method: str, template: str) -> bool:
        terminal = self._find_terminal(template)
        return terminal is not None and method.upper() in terminal.ops

    def remove_operation(self, method: str, template: str) -> bool:
        """Forget one spec operation (a spec changed at the collector). A path left without
        operations stops matching, so its requests are routed by inference again."""
        node = self._find_node(template)
        terminal = node.terminal if node is not None else None
        if terminal is None or terminal.ops.pop(method.upper(), None) is None:
            return False
        if not terminal.ops:
            assert node is not None
            node.terminal = None
        self._spec_operations -= 1
        self._reset_cache()
        return True

    def _find_terminal(self, template: str) -> _SpecTerminal | None:
        node = self._find_node(template)
        return node.terminal if node is not None else None

    def _find_node(self, template: str) -> _SpecNode | None:
        """The node of a spec template, without creating one (``_spec_terminal`` creates)."""
        node: _SpecNode | None = self._spec_root
        for seg in _segments(template):
            if node is None:
                return None
            if seg.startswith("{") and seg.endswith("}") and seg.count("{") == 1:
                node = node.param
            elif "{" in seg:
                node = next((child for _, source, child in node.patterns if source == seg), None)
            else:
                node = node.literals.get(seg)
        return node

    def _spec_terminal(self, api: str, template: str) -> _SpecTerminal:
        node = self._spec_root
        for seg in _segments(template):
            if seg.startswith("{") and seg.endswith("}") and seg.count("{") == 1:
                if node.param is None:
                    node.param = _SpecNode()
                node = node.param
            elif "{" in seg:
                for _, source, child in node.patterns:
                    if source == seg:
                        node = child
                        break
                else:
                    child = _SpecNode()
                    node.patterns.append((_segment_pattern(seg), seg, child))
                    node = child
            else:
                node = node.literals.setdefault(seg, _SpecNode())
        if node.terminal is None:
            node.terminal = _SpecTerminal(api, template)
        return node.terminal

    # ---- routing

    def route(self, method: str, path: str) -> Route:
        cached = self._lookup(path)
        if cached.route is not None:
            return cached.route
        return _pick(cached.candidates or [], method.upper())

    def _reset_cache(self) -> None:
        self._lookup.cache_clear()

    def _resolve(self, path: str) -> _Cached:
        segs = _segments(path)
        if self._spec_operations:
            candidates: list[_SpecTerminal] = []
            _spec_candidates(self._spec_root, segs, 0, candidates)
            if candidates:
                return _Cached(candidates, None)
        template = self._infer(segs)
        return _Cached(None, Route(api=self.api, template=template))

    def _infer(self, segs: list[str]) -> str:
        """The inferred template, learning as it goes.

        Learned state, and why: type rules cannot tell a user name, a SKU or a file name from a
        resource name, so the router counts distinct literals per position under the same parent
        template. When a position has seen more than ``cardinality_threshold`` distinct literals it
        *collapses*: its literal children are dropped and, from then on, every literal there is
        ``{param}`` (the route cache is cleared, so no cached route names the old literal). This
        converges: a collapse happens at most once per position and never reverts, and every
        replica that has seen more than the threshold of distinct values at a position ends at the
        same template (``{param}`` is named deterministically), regardless of arrival order. Until
        then a replica may report a few literal templates, which simply stop receiving traffic.

        The root position does not collapse: scanners probe hundreds of root paths, and a collapsed
        root would turn every endpoint into ``/{param}/...``. Past the threshold, *new* root
        literals become ``{param}`` while the known ones stay.
        """
        if len(segs) > MAX_SEGMENTS:
            segs = [*segs[: MAX_SEGMENTS - 1], "\x00rest"]
        parts: list[str] = []
        counts: dict[str, int] = {}
        node: _Node | None = self._root
        for seg in segs:
            kind = "rest" if seg == "\x00rest" else classify_segment(seg)
            if kind is None and len(seg) > MAX_LITERAL:
                kind = "param"
            if kind is None:
                if node is None:
                    kind = "param"  # beyond the cap: untracked literals would be unbounded
                else:
                    literals = node.literals
                    if literals is None:
                        kind = "param"  # a collapsed position
                    else:
                        child = literals.get(seg)
                        if child is None:
                            if len(literals) >= self.cardinality_threshold:
                                if node is self._root:
                                    kind = "param"
                                else:
                                    self._collapse(node)
                                    kind = "param"
                            elif self._nodes < self.max_templates:
                                child = literals[seg] = _Node()
                                self._nodes += 1
                            else:
                                self.overflow += 1
                                kind = "param"
                        if kind is None:
                            parts.append(seg)
                            node = child
                            continue
            parts.append(_name(kind, counts))
            if node is not None:
                child = node.params.get(kind)
                if child is None:
                    if self._nodes < self.max_templates:
                        child = node.params[kind] = _Node()
                        self._nodes += 1
                    else:
                        self.overflow += 1
                node = child
        return "/" + "/".join(parts)

    def _collapse(self, node: _Node) -> None:
        literals = node.literals or {}
        self._nodes -= sum(_subtree_size(child) for child in literals.values())
        node.literals = None
        self.collapses += 1
        self._reset_cache()  # cached inferred routes may name the collapsed literals


def _pick(candidates: list[_SpecTerminal], method: str) -> Route:
    """The first candidate that declares the method (HEAD falls back to GET, as servers answer HEAD
    wherever GET exists); else the best path match as an undeclared method of it."""
    for terminal in candidates:
        route = terminal.ops.get(method)
        if route is None and method == "HEAD":
            route = terminal.ops.get("GET")
        if route is not None:
            return route
    return candidates[0].fallback
