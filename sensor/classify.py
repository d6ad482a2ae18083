"""Data classification: which kinds of sensitive data an exchange carries, and where.

Types are data (``policies/datatypes.yaml`` plus users' files), validated at load into msgspec
Structs; a bad file fails with ``file:line: problem``. Each type has value patterns, an optional
validator (``sensor.validators``), and key-name hints that either are required (a bare 9-digit number
is an SSN only under an "ssn"-ish key) or merely allow it.

The hot path is built for throughput, not for one regex per value:

1. ``sensor.walk`` yields leaves ``(location, path, key, value)`` in one bounded walk;
2. all leaf values are joined with NUL separators into one buffer and scanned ONCE by a multi-pattern
   scanner (Hyperscan; a pure-``re`` fallback when it cannot be imported). A match end offset maps
   back to its leaf by bisection. The scanner is only a prefilter: it answers "which leaves may hold
   which pattern", so both back-ends produce the same candidates and therefore the same results;
3. key hints come from a dict lookup of the raw key (normalised once per distinct key and cached);
4. only candidates run the precise regex and the validator (Luhn, mod-97, ...).

Results carry type ids, locations, path templates and counts: never values (not in results, not in
exceptions, not in logs).
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import os
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from sensor import hscache
from sensor.classify_policy import CATEGORIES, DatatypesFile, DataTypeSpec, PatternSpec
from sensor.events import DataTypeSeen
from sensor.exchange import Exchange
from sensor.validators import VALIDATORS, Validator
from sensor.walk import DEFAULT_LIMITS, Leaf, WalkLimits, WalkStats, exchange_leaves
from sensor.yamlnodes import line_of, node_at, read_policy_yaml

_hyperscan: Any
try:  # Hyperscan is optional: a platform without it gets the pure-re scanner, same results.
    import hyperscan as _hyperscan  # type: ignore[import-untyped,no-redef,unused-ignore]
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    _hyperscan = None

__all__ = [
    "CATEGORIES",
    "Classifier",
    "ClassifyResult",
    "DataTypeSpec",
    "DatatypesError",
    "PatternSpec",
    "bundled_datatypes_path",
    "datatype_info",
    "hyperscan_available",
    "load_datatypes",
]

log = logging.getLogger(__name__)

LOCATIONS: Final = ("path", "query", "header", "request_body", "response_body")

class DatatypesError(ValueError):
    """A data types file that cannot be used; the message names the file, the line and the problem
    (never a value seen in traffic: these come from policy files only)."""


_ID: Final = re.compile(r"[a-z][a-z0-9_]{1,63}", re.ASCII)


def bundled_datatypes_path() -> str:
    """The bundled ``policies/datatypes.yaml``, located through the ``policies`` package."""
    try:
        ref = importlib.resources.files("policies").joinpath("datatypes.yaml")
        if ref.is_file():
            return str(ref)
    except (ImportError, OSError, TypeError, ValueError):
        # An editable install made while ``policies`` was a namespace package confuses
        # importlib.resources (NotADirectoryError); the package path still tells where it is.
        pass
    try:
        import policies

        for entry in getattr(policies, "__path__", ()):
            candidate = os.path.join(str(entry), "datatypes.yaml")
            if os.path.isfile(candidate):
                return candidate
    except ImportError:
        pass
    return str(Path(__file__).resolve().parent.parent / "policies" / "datatypes.yaml")




def _load_file(path: str) -> list[tuple[DataTypeSpec, int]]:
    """Parse and validate one file: (spec, line of its entry) for each type."""
    data, root = read_policy_yaml(path, DatatypesError)
    try:
        parsed = msgspec.convert(data, DatatypesFile)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        where = msg.rsplit(" - at `", 1)
        node = node_at(root, where[1].rstrip("`")) if len(where) == 2 else root
        raise DatatypesError(f"{path}:{line_of(node)}: {msg}") from None
    if parsed.version != 1:
        raise DatatypesError(f"{path}:{line_of(node_at(root, '$.version'))}: unsupported version {parsed.version}")
    out: list[tuple[DataTypeSpec, int]] = []
    seen: set[str] = set()
    # One compile of all the file's value patterns; only when it fails is each pattern compiled on
    # its own, to name the culprit's line (a compile costs milliseconds, a file has dozens).
    scanner_ok = _scanner_problem_many(
        [p for spec in parsed.datatypes for p in spec.patterns if not p.key_required and _valid_re(p.regex)]
    )
    for i, spec in enumerate(parsed.datatypes):
        line = line_of(node_at(root, f"$.datatypes[{i}]"))

        def fail(problem: str, sub: str = "", _i: int = i, _line_: int = line) -> DatatypesError:
            node = node_at(root, f"$.datatypes[{_i}]{sub}") if sub else None
            return DatatypesError(f"{path}:{line_of(node) if node is not None else _line_}: {problem}")

        if _ID.fullmatch(spec.id) is None:
            raise fail(f"type id {spec.id!r} must match {_ID.pattern}", ".id")
        if spec.id in seen:
            raise fail(f"duplicate type id {spec.id!r}", ".id")
        seen.add(spec.id)
        if not spec.patterns:
            raise fail(f"type {spec.id!r} has no patterns", ".patterns")
        if spec.validator is not None and spec.validator not in VALIDATORS:
            raise fail(f"type {spec.id!r}: unknown validator {spec.validator!r}", ".validator")
        for loc in spec.locations or ():
            if loc not in LOCATIONS:
                raise fail(f"type {spec.id!r}: unknown location {loc!r}", ".locations")
        for j, pat in enumerate(spec.patterns):
            sub = f".patterns[{j}]"
            if pat.validator is not None and pat.validator not in VALIDATORS:
                raise fail(f"type {spec.id!r}: unknown validator {pat.validator!r}", sub + ".validator")
            try:
                re.compile(pat.regex)
            except re.error as exc:
                raise fail(f"type {spec.id!r}: bad regex: {exc}", sub + ".regex") from None
            if not pat.key_required and not scanner_ok:
                problem = _scanner_problem(pat)
                if problem:
                    raise fail(f"type {spec.id!r}: pattern unusable in the scanner: {problem}", sub + ".regex")
            if pat.key_required and not spec.keys:
                raise fail(f"type {spec.id!r}: a key_required pattern needs key hints (keys)", sub)
        out.append((spec, line))
    return out


def load_datatypes(paths: Sequence[str] | None = None, *, bundled: bool = True) -> tuple[DataTypeSpec, ...]:
    """The bundled types merged with users' files, in order; a later type with the same id replaces
    the earlier one (so a user can retune a bundled type). Raises ``DatatypesError``."""
    files = ([bundled_datatypes_path()] if bundled else []) + list(paths or ())
    merged: dict[str, DataTypeSpec] = {}
    for path in files:
        for spec, _line_no in _load_file(path):
            merged[spec.id] = spec
    for spec in merged.values():
        for other in spec.suppressed_by:
            if other not in merged:
                raise DatatypesError(f"{files[-1]}: type {spec.id!r} is suppressed_by unknown type {other!r}")
    return tuple(merged.values())


def _policy_files(policy_dir: str | None) -> list[str]:
    """Users' data type files in a policies directory: ``datatypes.yaml`` and ``datatypes.d/*.yaml``."""
    if not policy_dir:
        return []
    out: list[str] = []
    main = os.path.join(policy_dir, "datatypes.yaml")
    if os.path.isfile(main) and os.path.realpath(main) != os.path.realpath(bundled_datatypes_path()):
        out.append(main)
    extra = os.path.join(policy_dir, "datatypes.d")
    if os.path.isdir(extra):
        out.extend(sorted(os.path.join(extra, n) for n in os.listdir(extra) if n.endswith((".yaml", ".yml"))))
    return out


# --------------------------------------------------------------------------------------------------
# Key hints

_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM: Final = re.compile(r"[^0-9a-z]+")


def key_tokens(key: str) -> tuple[str, ...]:
    """``"billingPhoneNumber"``, ``"billing_phone-number"`` -> ``("billing", "phone", "number")``."""
    return tuple(t for t in _NON_ALNUM.split(_CAMEL.sub("_", key).lower()) if t)


def _hint_matches(hint: tuple[str, ...], tokens: tuple[str, ...], joined: str) -> bool:
    """A hint matches a key when its tokens appear contiguously in the key's tokens (a token may be
    the plural), or when the hint written as one word is one of the key's tokens or the whole key
    ("phonenumber" ~ "phone_number")."""
    n = len(hint)
    if n == 0:
        return False
    flat = "".join(hint)
    if flat == joined or flat in tokens or flat + "s" in tokens:
        return True
    for i in range(len(tokens) - n + 1):
        window = tokens[i : i + n]
        if window == hint or (window[:-1] == hint[:-1] and window[-1] == hint[-1] + "s"):
            return True
    return False


# --------------------------------------------------------------------------------------------------
# The scanner (prefilter): Hyperscan or re


def hyperscan_available() -> bool:
    return _hyperscan is not None


def _valid_re(regex: str) -> bool:
    try:
        re.compile(regex)
    except re.error:
        return False
    return True


def _scanner_problem_many(patterns: list[PatternSpec]) -> bool:
    """True when all patterns compile together into one scanner database (or there is no Hyperscan)."""
    if _hyperscan is None or not patterns:
        return True
    return _compiles(tuple((p.regex, p.caseless) for p in patterns))


@functools.lru_cache(maxsize=16)
def _compiles(patterns: tuple[tuple[str, bool], ...]) -> bool:
    # Memoised: the same bundled file is validated again on every reload.
    assert _hyperscan is not None
    try:
        hscache.compile_block(
            _hyperscan,
            [regex.encode() for regex, _ in patterns],
            [int(_hyperscan.HS_FLAG_CASELESS) if caseless else 0 for _, caseless in patterns],
        )
    except Exception:  # hyperscan.error: the caller compiles each pattern to name the culprit
        return False
    return True


def _scanner_problem(pat: PatternSpec) -> str | None:
    """Why a value pattern cannot go into the multi-pattern scanner, or None."""
    if _hyperscan is None:
        return None
    try:
        db = _hyperscan.Database(mode=_hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=[pat.regex.encode()], ids=[0], elements=1, flags=[_hs_flags(pat)])
    except Exception as exc:  # hyperscan.error carries the compiler's message
        return str(exc)
    return None


def _hs_flags(pat: PatternSpec) -> int:
    assert _hyperscan is not None
    return int(_hyperscan.HS_FLAG_CASELESS) if pat.caseless else 0


class _Scanner:
    """Which leaves may hold which value pattern: one pass over the joined buffer."""

    def __init__(self, patterns: Sequence[PatternSpec], backend: str) -> None:
        self.backend = backend
        self._count = len(patterns)
        self._db: Any = None
        self._res: list[re.Pattern[bytes]] = []
        if not patterns:
            return
        if backend == "hyperscan":
            assert _hyperscan is not None
            self._db = hscache.compile_block(
                _hyperscan, [p.regex.encode() for p in patterns], [_hs_flags(p) for p in patterns]
            )
        else:
            # Byte patterns with ASCII classes: the same semantics Hyperscan gives over UTF-8 bytes.
            self._res = [
                re.compile(p.regex.encode(), re.ASCII | (re.IGNORECASE if p.caseless else 0)) for p in patterns
            ]

    def scan(self, data: bytes, starts: list[int]) -> set[tuple[int, int]]:
        """(leaf index, pattern index) pairs. ``starts`` holds each leaf's first byte offset."""
        hits: set[tuple[int, int]] = set()
        if not self._count or not data:
            return hits
        if self._db is not None:

            def on_match(pid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
                hits.add((bisect_right(starts, to - 1) - 1, pid))

            self._db.scan(data, match_event_handler=on_match)
            return hits
        for pid, rx in enumerate(self._res):
            for m in rx.finditer(data):
                # A match that crosses a separator marks every leaf it touches: over-approximating
                # candidates is harmless (verification decides), missing one is not.
                first = bisect_right(starts, m.start()) - 1
                last = bisect_right(starts, max(m.end() - 1, m.start())) - 1
                for leaf in range(first, last + 1):
                    hits.add((leaf, pid))
        return hits


# --------------------------------------------------------------------------------------------------
# Compiled types


@dataclass(slots=True, frozen=True)
class _Pattern:
    type_index: int
    regex: re.Pattern[str]
    validator: Validator | None
    key_required: bool


@dataclass(slots=True, frozen=True)
class _Type:
    spec: DataTypeSpec
    hints: tuple[tuple[str, ...], ...]
    excludes: tuple[tuple[str, ...], ...]
    value_patterns: tuple[int, ...]  # indices into Classifier._value_patterns
    hinted_patterns: tuple[_Pattern, ...]  # key_required patterns, Python only
    locations: frozenset[str] | None
    suppressed_by: frozenset[int]
    credential: bool


_NO_KEYS: Final[tuple[frozenset[int], frozenset[int]]] = (frozenset(), frozenset())


@dataclass(frozen=True, slots=True)
class ClassifyResult:
    data_types: tuple[DataTypeSeen, ...]
    sampled: bool = False  # some array was cut to its sample: counts are lower bounds
    truncated: bool = False  # some limit or a body prefix cut the walk
    leaves: int = 0


_EMPTY_RESULT: Final = ClassifyResult(())
_LOCATION_ORDER: Final = {loc: i for i, loc in enumerate(LOCATIONS)}


def _order(item: tuple[tuple[str, str, str], int]) -> tuple[int, str, str]:
    (tid, loc, path), _ = item
    return _LOCATION_ORDER.get(loc, 9), path, tid


_KEY_CACHE_MAX: Final = 16_384
_VERDICT_CACHE_MAX: Final = 8192
# (key, value) pairs whose types are remembered (by hash): ~100 bytes each, cleared when full.
_LEAF_MEMO_MAX: Final = 65_536
_MEMO_MAX_VALUE: Final = 2048  # longer values are rarely repeated: not worth hashing twice


def _safe(validator: Validator, candidate: str) -> bool:
    try:
        return validator(candidate)
    except Exception:  # validators must not raise; one that does is a miss, never a crash
        return False


class Classifier:
    """Compiled data types. Build once (at start-up / reload) and share; ``classify_*`` are pure
    apart from a bounded key-name cache. Not for concurrent use from several threads (the Hyperscan
    scratch space is per database)."""

    def __init__(
        self,
        datatypes: Iterable[DataTypeSpec],
        *,
        enabled: set[str] | None = None,
        limits: WalkLimits = DEFAULT_LIMITS,
        backend: Literal["auto", "hyperscan", "re"] = "auto",
    ) -> None:
        specs = tuple(datatypes)
        self._all: dict[str, DataTypeSpec] = {s.id: s for s in specs}
        if enabled is not None:
            unknown = enabled - set(self._all)
            if unknown:
                raise DatatypesError(f"unknown data type ids enabled: {', '.join(sorted(unknown))}")
            active = [s for s in specs if s.id in enabled]
        else:
            active = [s for s in specs if s.enabled]
        if backend == "auto":
            backend = "hyperscan" if _hyperscan is not None else "re"
        if backend == "hyperscan" and _hyperscan is None:
            raise RuntimeError("hyperscan is not installed")
        self.backend: str = backend
        self.limits = limits
        index = {s.id: i for i, s in enumerate(active)}
        value_specs: list[PatternSpec] = []
        self._value_patterns: list[_Pattern] = []
        types: list[_Type] = []
        for ti, spec in enumerate(active):
            value_idx: list[int] = []
            hinted: list[_Pattern] = []
            for pat in spec.patterns:
                vname = pat.validator or spec.validator
                compiled = _Pattern(
                    ti,
                    re.compile(pat.regex, (re.ASCII if not pat.key_required else 0) | (re.I if pat.caseless else 0)),
                    VALIDATORS[vname] if vname else None,
                    pat.key_required,
                )
                if pat.key_required:
                    hinted.append(compiled)
                else:
                    value_idx.append(len(self._value_patterns))
                    self._value_patterns.append(compiled)
                    value_specs.append(pat)
            types.append(
                _Type(
                    spec=spec,
                    hints=tuple(t for t in (key_tokens(k) for k in spec.keys) if t),
                    excludes=tuple(t for t in (key_tokens(k) for k in spec.exclude_keys) if t),
                    value_patterns=tuple(value_idx),
                    hinted_patterns=tuple(hinted),
                    locations=frozenset(spec.locations) if spec.locations else None,
                    suppressed_by=frozenset(index[s] for s in spec.suppressed_by if s in index),
                    credential=spec.category == "credential",
                )
            )
        self._types = tuple(types)
        self._scanner = _Scanner(value_specs, backend)
        self._key_cache: dict[str, tuple[frozenset[int], frozenset[int]]] = {}
        self._verdicts: dict[int, bool] = {}
        self._leaf_memo: dict[int, tuple[tuple[int, int], ...]] = {}

    # -- construction helpers --------------------------------------------------------------------

    @classmethod
    def from_policies(
        cls, policy_dir: str | None = None, *, enabled: set[str] | None = None, limits: WalkLimits = DEFAULT_LIMITS
    ) -> Classifier:
        """The bundled types plus ``datatypes.yaml`` / ``datatypes.d/*.yaml`` in ``policy_dir``."""
        return cls(load_datatypes(_policy_files(policy_dir)), enabled=enabled, limits=limits)

    @property
    def type_ids(self) -> tuple[str, ...]:
        """Ids of the enabled types."""
        return tuple(t.spec.id for t in self._types)

    def datatype_info(self, type_id: str) -> tuple[str, str]:
        """(display name, category) of a known type (enabled or not); KeyError otherwise."""
        spec = self._all[type_id]
        return spec.name, spec.category

    # -- classification --------------------------------------------------------------------------

    def _keys(self, key: str) -> tuple[frozenset[int], frozenset[int]]:
        """(types hinted by this key, types excluded under it), cached per distinct raw key."""
        cached = self._key_cache.get(key)
        if cached is not None:
            return cached
        tokens = key_tokens(key)
        if not tokens:
            result = _NO_KEYS
        else:
            joined = "".join(tokens)
            hinted = set()
            excluded = set()
            for ti, t in enumerate(self._types):
                if any(_hint_matches(h, tokens, joined) for h in t.excludes):
                    excluded.add(ti)
                elif any(_hint_matches(h, tokens, joined) for h in t.hints):
                    hinted.add(ti)
            result = (frozenset(hinted), frozenset(excluded)) if hinted or excluded else _NO_KEYS
        if len(self._key_cache) >= _KEY_CACHE_MAX:
            self._key_cache.clear()
        self._key_cache[key] = result
        return result

    def classify_leaves(self, leaves: Iterable[Leaf], *, status_class: str = "") -> list[DataTypeSeen]:
        """Findings over leaves, aggregated by (type, location, path) with counts. ``status_class``
        is stamped on response-body findings."""
        found = self._find(leaves)
        return [
            DataTypeSeen(
                type=tid,
                location=loc,
                path=path,
                status_class=status_class if loc == "response_body" else "",
                count=n,
            )
            for (tid, loc, path), n in sorted(found.items(), key=_order)
        ]

    def _find(self, leaves: Iterable[Leaf]) -> dict[tuple[str, str, str], int]:
        leaf_list = leaves if isinstance(leaves, list) else list(leaves)
        counts: dict[tuple[str, str, str], int] = {}  # a plain dict: Counter() costs ~1 µs to make
        if not leaf_list or not self._types:
            return counts
        # 0. APIs repeat keys and values (enums, names, the same customer in every response): what a
        # (key, value) pair holds is remembered by its hash, never the value itself, and only the
        # rest is scanned. A pair's types do not depend on its neighbours in the scan buffer (every
        # candidate is verified on its own value), so a remembered answer is the answer.
        memo = self._leaf_memo
        todo: list[Leaf] = []
        todo_hashes: list[int] = []
        types = self._types
        for leaf in leaf_list:
            _, _, key, value = leaf  # unpacking: cheaper than two NamedTuple attribute reads
            if len(value) > _MEMO_MAX_VALUE:
                todo.append(leaf)
                todo_hashes.append(0)
                continue
            h = hash((key, value))
            known = memo.get(h)
            if known is None:
                todo.append(leaf)
                todo_hashes.append(h)
            elif known:
                self._count(counts, leaf, known)
        if not todo:
            return counts
        if len(memo) + len(todo) > _LEAF_MEMO_MAX:
            memo.clear()
        # 1. One buffer, one scan.
        values = [leaf.value for leaf in todo]
        buf = "\x00".join(values)
        if buf.count("\x00") != len(values) - 1:
            # A value carrying NUL itself would blur the leaf boundaries: blank them (rare path).
            values = [v.replace("\x00", " ") for v in values]
            buf = "\x00".join(values)
        data = buf.encode("utf-8", "surrogatepass")
        starts: list[int] = []
        pos = 0
        if len(data) == len(buf):  # ASCII: byte offsets are character offsets
            for v in values:
                starts.append(pos)
                pos += len(v) + 1
        else:
            for v in values:
                starts.append(pos)
                pos += len(v.encode("utf-8", "surrogatepass")) + 1
        candidates: dict[int, set[int]] = {}
        for leaf_i, pid in self._scanner.scan(data, starts):
            candidates.setdefault(leaf_i, set()).add(pid)
        # 2. Key hints: one cached dict lookup per leaf.
        keycache = self._key_cache
        hinted_leaves: dict[int, tuple[frozenset[int], frozenset[int]]] = {}
        for i, leaf in enumerate(todo):
            k = keycache.get(leaf.key)
            if k is None:
                k = self._keys(leaf.key)
            if k is not _NO_KEYS:
                hinted_leaves[i] = k
        # 3. Verify candidates only; remember every pair's answer (most: nothing).
        for i, h in enumerate(todo_hashes):
            if h and i not in candidates and i not in hinted_leaves:
                memo[h] = ()
        for i in sorted(set(candidates) | set(hinted_leaves)):
            leaf = todo[i]
            hinted, excluded = hinted_leaves.get(i, _NO_KEYS)
            per_type: dict[int, set[tuple[int, int]]] = {}
            for pid in candidates.get(i, ()):
                pat = self._value_patterns[pid]
                if pat.type_index in excluded:
                    continue
                self._verify(pat, leaf.value, per_type)
            for ti in hinted:
                for pat in types[ti].hinted_patterns:
                    self._verify(pat, leaf.value, per_type)
            found = tuple(
                (ti, len(spans)) for ti, spans in per_type.items()
                if not (types[ti].suppressed_by and not types[ti].suppressed_by.isdisjoint(per_type))
            )
            if todo_hashes[i]:
                memo[todo_hashes[i]] = found
            if found:
                self._count(counts, leaf, found)
        return counts

    def _count(self, counts: dict[tuple[str, str, str], int], leaf: Leaf, found: tuple[tuple[int, int], ...]) -> None:
        """Add one leaf's types (after suppression) where its location allows them."""
        for ti, n in found:
            t = self._types[ti]
            if leaf.location == "header" and not t.credential:
                continue  # headers are read for credentials only
            if t.locations is not None and leaf.location not in t.locations:
                continue
            key = (t.spec.id, leaf.location, leaf.path)
            counts[key] = counts.get(key, 0) + n

    def _verify(self, pat: _Pattern, value: str, per_type: dict[int, set[tuple[int, int]]]) -> None:
        validator = pat.validator
        # A pattern with a capturing group hands only that group to the validator ("AccountKey=(...)").
        group = 1 if pat.regex.groups else 0
        memo = self._verdicts
        for m in pat.regex.finditer(value):
            if validator is not None:
                candidate = m.group(group)
                # APIs repeat the same values (a customer's phone in every response), and some
                # validators are costly (phonenumbers). Memoised by Python's per-process randomised
                # hash, never by the value itself, so no raw value is retained here.
                key = hash((id(validator), candidate))
                ok = memo.get(key)
                if ok is None:
                    ok = _safe(validator, candidate)
                    if len(memo) >= _VERDICT_CACHE_MAX:
                        memo.clear()
                    memo[key] = ok
                if not ok:
                    continue
            per_type.setdefault(pat.type_index, set()).add(m.span())

    def classify_exchange(self, exchange: Exchange) -> ClassifyResult:
        """Data types in one exchange. Never raises on hostile input (the walk is bounded and total;
        validators are guarded); values never appear in the result."""
        stats = WalkStats()
        leaves = exchange_leaves(exchange, self.limits, stats)
        if not leaves:
            return (
                ClassifyResult((), sampled=stats.sampled, truncated=stats.truncated)
                if stats.truncated
                else _EMPTY_RESULT
            )
        status_class = f"{exchange.status // 100}xx" if exchange.status else ""
        found = self.classify_leaves(leaves, status_class=status_class)
        return ClassifyResult(tuple(found), sampled=stats.sampled, truncated=stats.truncated, leaves=len(leaves))


# --------------------------------------------------------------------------------------------------
# Metadata for the collector

_bundled_info: dict[str, tuple[str, str]] | None = None


def datatype_info(type_id: str, datatypes: Iterable[DataTypeSpec] | None = None) -> tuple[str, str] | None:
    """(display name, category) of a type id, from ``datatypes`` or the bundled file; None if unknown.
    The collector uses it for sensitivity labels."""
    global _bundled_info  # noqa: PLW0603 - a lazily built, read-only memo of the bundled file
    if datatypes is not None:
        for spec in datatypes:
            if spec.id == type_id:
                return spec.name, spec.category
        return None
    if _bundled_info is None:
        _bundled_info = {s.id: (s.name, s.category) for s in load_datatypes()}
    return _bundled_info.get(type_id)


def iter_leaf_types(classifier: Classifier, leaves: Iterable[Leaf]) -> Iterator[tuple[str, str, str, int]]:
    """(type, location, path, count) without building DataTypeSeen: for callers that aggregate."""
    for (tid, loc, path), n in classifier._find(leaves).items():
        yield tid, loc, path, n
