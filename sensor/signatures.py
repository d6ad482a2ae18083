"""Attack signatures: rules as data, one multi-pattern scan per transform chain, anomaly scoring.

Rules live in ``policies/signatures/*.yaml`` and are validated at load (msgspec Structs); a bad file
fails start-up with ``file:line: problem``. At build time the rules active at the chosen paranoia
level are grouped by transform chain, and each group is compiled into ONE Hyperscan database.

How a request is scanned (``SignatureEngine.scan``):

1. The values (path, query names/values, headers, cookies, body keys/values, user agent) are capped
   and joined into one text, NUL-separated. Plausible base64 values add their decoded text as extra
   "virtual" values.
2. For each transform chain, the transforms run over the joined text in one call each (a per-value
   loop in Python would cost more than the whole scan budget); the NUL count tells whether a decode
   crossed or created a separator, in which case that step is redone value by value.
3. The chain's database scans the joined UTF-8 bytes once. Every reported end offset maps to a
   value; the pair (rule, value) is only a *candidate*.
4. Candidates are confirmed with Python ``re`` on that single value (bytes, same flags). This gives
   exact per-value semantics, the match offsets for the excerpt, and the location filter (a rule
   for query values ignores a hit in a header).

Why not ``HS_FLAG_SINGLEMATCH`` / ``SOM_LEFTMOST``: one scan covers all values of a request, so a
single-match rule whose first hit lands in a value it does not target would hide its real hit in a
later value; and the confirming ``re`` search yields offsets without paying for leftmost-start
tracking. Benign traffic produces almost no candidates, so the confirm step costs nothing there.

The ``re`` fallback (``engine="re"``, or Hyperscan not importable) uses the same joined buffer: one
``search`` per rule over it (a miss proves no value matches), then the same per-value confirmation.
Both engines therefore reach verdicts through the same final ``re`` test on the same bytes; the
test suite checks the whole corpus gives identical results. Values are capped (``MAX_VALUE_CHARS``)
for both engines so that verdicts are equal and ``re`` stays fast; patterns use bounded repeats only.
"""

from __future__ import annotations

import bisect
import contextlib
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec
import yaml

from sensor import hscache
from sensor import transforms as tf
from sensor.signature_policy import (
    DEFAULT_SCORING,
    Category,
    Location,
    RuleSpec,
    ScoringSpec,
    SignatureFile,
)
from sensor.yamlnodes import read_policy_yaml

_hs: Any
try:  # Hyperscan is optional: x86_64/aarch64 wheels only; the re engine covers the rest
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised through engine="re"
    _hs = None

__all__ = [
    "CATEGORIES",
    "LOCATIONS",
    "Match",
    "Rule",
    "ScanItem",
    "ScanResult",
    "SignatureEngine",
    "SignaturePolicyError",
    "default_policy_dir",
    "hyperscan_available",
    "load_rules",
    "redact_excerpt",
]

LOCATIONS: tuple[str, ...] = Location.__args__  # type: ignore[attr-defined]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]

MAX_VALUE_CHARS = 8 * 1024  # per value; the sensor inspects a 64 KiB body prefix anyway
MAX_ITEMS = 512  # values per request
MAX_MATCHES = 32  # matches reported per request (the score still counts every rule)
MAX_CANDIDATES = 8192  # Hyperscan callbacks per scan before the scan is cut short
EXCERPT_MAX = 64
EXCERPT_CONTEXT = 16  # characters kept on each side of the match

# Headers never scanned: credentials (their content is not ours to excerpt and base64 credentials
# decode to arbitrary text), framing headers, and the cookie header (cookies are scanned one by one).
SKIP_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "content-length", "connection", "host"}
)

_SEP = "\x00"  # joins values in text form (transforms never create or remove it unnoticed)
# ... and becomes 0xFF in the scanned bytes: a byte UTF-8 never produces, so no value can contain
# it. (A NUL would do the same job, but Hyperscan mis-reports literals that contain NUL bytes when
# they share a database with some other patterns -- found by the engine-equality test.)
_SEP_B = 0xFF
_SEP_BYTES = b"\xff"


class SignaturePolicyError(ValueError):
    """A signature policy file is invalid; the message names the file, the line and the problem."""


# --------------------------------------------------------------------------------------------------
# public value types


class ScanItem(NamedTuple):
    location: str  # one of LOCATIONS
    name: str  # parameter / header / cookie name, JSON path for body items, "" for the path
    value: str


class Match(NamedTuple):
    rule_id: str
    category: str
    severity: str
    location: str
    name: str
    excerpt: str  # redacted, at most 64 characters around the match
    owasp: str
    mitre: str
    score: int


class ScanResult(NamedTuple):
    matches: tuple[Match, ...]
    score: int
    blocked: bool


class Rule(NamedTuple):
    """A validated rule, compiled for the re confirmation step."""

    id: str
    category: str
    name: str
    severity: str
    paranoia: int
    targets: frozenset[str]
    headers: frozenset[str] | None
    chain: tuple[str, ...]  # transforms, without "base64"
    base64: bool  # also scan the base64-decoded form of values
    caseless: bool
    pattern: str
    score: int
    owasp: str
    mitre: str
    rx: re.Pattern[bytes]  # per-value confirmation
    joined_pattern: str  # ^ and $ rewritten to the separators of the joined buffer
    hs_pattern: str  # joined_pattern with bounded repeats widened, for Hyperscan
    source: str  # "file:line", for messages


# --------------------------------------------------------------------------------------------------
# loading


def default_policy_dir() -> str:
    return str(Path(__file__).resolve().parent.parent / "policies")


_FORBIDDEN = re.compile(r"\(\?[=!<](?!P?<?\w+>)|\\[1-9]|\\[AZzG]|\(\?P=|\(\?\(")


_COUNTED = re.compile(r"\{(\d+),(\d+)\}")


def _rewrite_anchors(pattern: str, *, widen: bool = False) -> str:
    """``^``/``$`` mean start/end of the value; in the joined buffer that is a 0xFF separator.

    ``widen`` also turns every bounded repeat ``{m,n}`` into ``{m,}``: the pattern then matches a
    superset, which is all a pre-filter needs. Hyperscan 0.9.1 (this wheel) was seen to drop real
    matches of bounded-repeat patterns when they share a database with other bounded-repeat patterns
    (``[;|][ \t]{0,16}id[ \t]{0,16}$`` next to ``<[a-z][^>]{0,200}?on``); unbounded repeats do not
    trigger it, and the ``re`` confirmation restores the exact bounds.
    """
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
            # a "]" right after "[" or "[^" is a literal member
            if pattern.startswith("^]", i + 1):
                out.append("^]")
                i += 2
            elif pattern.startswith("]", i + 1) or pattern.startswith("^", i + 1):
                out.append(pattern[i + 1])
                i += 1
        elif c == "{" and widen and (m := _COUNTED.match(pattern, i)):
            out.append("{" + m.group(1) + ",}")
            i = m.end()
            continue
        elif c == "^":
            out.append("\\xff")
        elif c == "$":
            out.append("\\n?\\xff")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _node_at(root: yaml.Node | None, path: list[str | int]) -> yaml.Node | None:
    node = root
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
        if node is None:
            return None
    return node


def _split_path(jpath: str) -> list[str | int]:
    return [int(i) if i else k for k, i in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", jpath)]


def _line_of(root: yaml.Node | None, path: list[str | int], key: str | None = None) -> int:
    node = _node_at(root, path)
    if key is not None and isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if getattr(k, "value", None) == key:
                return int(k.start_mark.line) + 1
    return int(node.start_mark.line) + 1 if node is not None else 1


def _load_file(path: Path) -> tuple[SignatureFile, yaml.Node | None]:
    data, root = read_policy_yaml(path, SignaturePolicyError)
    if data is None:
        data = {}
    try:
        spec = msgspec.convert(data, SignatureFile)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        where = re.search(r" - at `(\$[^`]*)`$", msg)
        jpath = where.group(1) if where else "$"
        problem = msg[: where.start()] if where else msg
        unknown = re.search(r"unknown field `([^`]+)`", problem)
        line = _line_of(root, _split_path(jpath), unknown.group(1) if unknown else None)
        field = jpath.removeprefix("$").removeprefix(".") or "document"
        raise SignaturePolicyError(f"{path}:{line}: {field}: {problem}") from None
    return spec, root


def load_rules(policy_dir: str | None = None) -> tuple[list[Rule], ScoringSpec]:
    """Load and validate every ``signatures/*.yaml`` below ``policy_dir`` (all paranoia levels).

    ``policy_dir`` may be the policies directory (holding ``signatures/``) or the signatures
    directory itself.
    """
    base = Path(policy_dir or default_policy_dir())
    sig_dir = base / "signatures" if (base / "signatures").is_dir() else base
    files = sorted(sig_dir.glob("*.yaml")) + sorted(sig_dir.glob("*.yml"))
    if not files:
        raise SignaturePolicyError(f"{sig_dir}: no signature files (*.yaml)")
    rules: list[Rule] = []
    scoring: ScoringSpec | None = None
    scoring_src = ""
    seen: dict[str, str] = {}
    for path in files:
        spec, root = _load_file(path)
        if spec.scoring is not None:
            if scoring is not None:
                line = _line_of(root, ["scoring"])
                raise SignaturePolicyError(f"{path}:{line}: scoring: already defined in {scoring_src}")
            scoring = spec.scoring
            scoring_src = f"{path}:{_line_of(root, ['scoring'])}"
        for i, rs in enumerate(spec.rules):
            src = f"{path}:{_line_of(root, ['rules', i])}"
            rules.append(_compile_rule(rs, src, path, root, index=i, seen=seen))
    scoring = scoring or DEFAULT_SCORING
    for sev in ("critical", "high", "medium", "low"):
        if sev not in scoring.severity_scores:
            raise SignaturePolicyError(f"{scoring_src}: scoring.severity_scores: missing {sev!r}")
    for level in (1, 2, 3, 4):
        if level not in scoring.thresholds:
            raise SignaturePolicyError(f"{scoring_src}: scoring.thresholds: missing paranoia level {level}")
    scores: dict[str, int] = {str(k): v for k, v in scoring.severity_scores.items()}
    rules = [r._replace(score=scores[r.severity]) if r.score < 0 else r for r in rules]
    return rules, scoring


def _compile_rule(
    rs: RuleSpec, src: str, path: Path, root: yaml.Node | None, *, index: int, seen: dict[str, str]
) -> Rule:
    def fail(field: str, problem: str) -> SignaturePolicyError:
        line = _line_of(root, ["rules", index, field]) if field else _line_of(root, ["rules", index])
        return SignaturePolicyError(f"{path}:{line}: rules[{index}].{field or 'id'} ({rs.id}): {problem}")

    if rs.id in seen:
        return_err = fail("id", f"duplicate rule id, first defined at {seen[rs.id]}")
        raise return_err
    seen[rs.id] = src
    if _FORBIDDEN.search(rs.pattern):
        raise fail("pattern", "lookarounds, back-references and \\A \\Z \\G anchors are not supported")
    flags = re.IGNORECASE if rs.caseless else 0
    try:
        rx = re.compile(rs.pattern.encode("utf-8"), flags)
        joined = _rewrite_anchors(rs.pattern)
        re.compile(joined.encode("utf-8"), flags)
    except re.error as exc:
        raise fail("pattern", f"invalid regular expression: {exc}") from None
    if rx.search(b"") is not None:
        raise fail("pattern", "matches the empty string")
    if rs.headers is not None and "header" not in rs.targets:
        raise fail("headers", "'headers' given but 'header' is not among the targets")
    chain = tuple(t for t in rs.transforms if t != "base64")
    return Rule(
        id=rs.id,
        category=rs.category,
        name=rs.name,
        severity=rs.severity,
        paranoia=rs.paranoia,
        targets=frozenset(rs.targets),
        headers=frozenset(h.lower() for h in rs.headers) if rs.headers is not None else None,
        chain=chain,
        base64="base64" in rs.transforms,
        caseless=rs.caseless,
        pattern=rs.pattern,
        score=rs.score if rs.score is not None else -1,  # -1: filled from scoring by load_rules
        owasp=rs.owasp,
        mitre=rs.mitre,
        rx=rx,
        joined_pattern=joined,
        hs_pattern=_rewrite_anchors(rs.pattern, widen=True),
        source=src,
    )


# --------------------------------------------------------------------------------------------------
# matchers: Hyperscan database or re fallback, both answering "(rule index, end offset)" candidates


def hyperscan_available() -> bool:
    return _hs is not None


class _HsMatcher:
    """Typed wrapper over one Hyperscan block-mode database (the module has no type stubs).

    Not thread-safe: the scratch space belongs to the database. The sensor analyses on one thread.
    """

    def __init__(self, rules: list[Rule], extra: bytes | None = None) -> None:
        assert _hs is not None
        self._hs: Any = _hs
        exprs = [r.hs_pattern.encode("utf-8") for r in rules]
        flags = [self._flags(r, prefilter=False) for r in rules]
        if extra is not None:  # an engine-internal pattern, reported with id len(rules)
            exprs.append(extra)
            flags.append(0)
        try:
            self._db = self._compile(exprs, flags)
        except Exception:
            # One pattern Hyperscan cannot take exactly: compile it in prefilter mode (a superset),
            # which is sound because every candidate is confirmed with re.
            for i, expr in enumerate(exprs):
                try:
                    self._compile([expr], [flags[i]])
                except Exception:
                    if i >= len(rules):
                        raise
                    flags[i] = self._flags(rules[i], prefilter=True)
                    try:
                        self._compile([expr], [flags[i]])
                    except Exception as exc:
                        raise SignaturePolicyError(f"{rules[i].source}: pattern ({rules[i].id}): {exc}") from None
            self._db = self._compile(exprs, flags)

    def _flags(self, rule: Rule, *, prefilter: bool) -> int:
        hs = self._hs
        f = 0
        if rule.caseless:
            f |= hs.HS_FLAG_CASELESS
        if prefilter:
            f |= hs.HS_FLAG_PREFILTER
        return int(f)

    def _compile(self, exprs: list[bytes], flags: list[int]) -> Any:
        return hscache.compile_block(self._hs, exprs, flags)

    def candidates(self, buf: bytes) -> list[tuple[int, int]]:
        hits: list[tuple[int, int]] = []
        append = hits.append

        def on_match(rule_idx: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
            append((rule_idx, end))
            return len(hits) >= MAX_CANDIDATES  # True stops the scan: enough evidence already

        with contextlib.suppress(self._hs.ScanTerminated):  # raised when on_match asked to stop
            self._db.scan(buf, match_event_handler=on_match)
        return hits


class _ReMatcher:
    """Pure-``re`` stand-in: one search per rule over the joined buffer."""

    def __init__(self, rules: list[Rule]) -> None:
        self._rx = [re.compile(r.joined_pattern.encode("utf-8"), re.IGNORECASE if r.caseless else 0) for r in rules]

    def candidates(self, buf: bytes) -> list[tuple[int, int]]:
        # A miss over the joined buffer proves no single value matches (separators are non-word
        # bytes and anchors were rewritten); a hit yields "some value may match": end offset -1 asks
        # the caller to try every value.
        return [(i, -1) for i, rx in enumerate(self._rx) if rx.search(buf) is not None]


# Where a base64-wrapped ASCII text may start: after a value boundary (0xFF) or after one of the
# separators _base64_variant splits on, 8 alphabet characters whose 1st/2nd and 5th/6th fit the
# start of a group of ASCII text (see transforms.may_be_base64_text). Every value _base64_variant
# can decode contains a match, so this is a sound pre-filter; it spares the per-value Python check
# on the ~99 % of values that are not base64.
_B64_START = rb"[\xff ,:=][A-Za-f][A-HQ-Xg-nwxyz0-3][A-Za-z0-9+/_=-]{2}[A-Za-f][A-HQ-Xg-nwxyz0-3][A-Za-z0-9+/_=-]{2}"
_B64_START_RX = re.compile(_B64_START)


class _Base64Finder:
    """Indices of the values worth a base64 decoding attempt (paths always are)."""

    def __init__(self, use_hyperscan: bool) -> None:
        self._db: Any = None
        if use_hyperscan:
            assert _hs is not None
            self._hs: Any = _hs
            self._db = hscache.compile_block(_hs, [_B64_START], [0])

    def candidates(self, buf: bytes, locs: list[str]) -> list[int]:
        ends: list[int] = []
        if self._db is not None:

            def on_match(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
                ends.append(end)
                return len(ends) >= MAX_CANDIDATES

            with contextlib.suppress(self._hs.ScanTerminated):
                self._db.scan(buf, match_event_handler=on_match)
        else:
            ends = [m.end() for m in _B64_START_RX.finditer(buf)]
        return _b64_items(buf, ends, locs)


def _b64_items(buf: bytes, ends: list[int], locs: list[str]) -> list[int]:
    # Ends arrive in increasing order (Hyperscan and finditer alike): count separators
    # incrementally, so mapping all of them to values costs one pass over the buffer.
    found: set[int] = set()
    seps = pos = 0
    for end in ends:
        seps += buf.count(_SEP_BYTES, pos, end - 1)
        pos = end - 1
        found.add(seps - 1)
    found.update(i for i, loc in enumerate(locs) if loc == "path")
    return sorted(found)


class _ScanState(NamedTuple):
    """What one scan accumulates: the values' locations and names, matches, scores per rule."""

    locs: list[str]
    names: list[str]
    found: dict[tuple[str, str, str], Match]
    rule_scores: dict[str, int]


class _ChainGroup(NamedTuple):
    chain: tuple[str, ...]
    rules: list[Rule]
    matcher: _HsMatcher | _ReMatcher


# --------------------------------------------------------------------------------------------------
# excerpts

# Secret-looking runs: 12+ token characters with both a letter and a digit, or any 24+ run.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_+/=\-]{12,}")
_DIGIT_RUN = re.compile(r"\d{6,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _mask_token(m: re.Match[str]) -> str:
    run = m.group(0)
    has_digit = any(c.isdigit() for c in run)
    has_alpha = any(c.isalpha() for c in run)
    if (has_digit and has_alpha) or len(run) >= 24:
        return run[:3] + "***"
    return run


def redact_excerpt(text: str) -> str:
    """Mask what could be a secret (long mixed tokens, long digit runs) and control characters."""
    text = _CONTROL.sub(lambda m: {"\r": "\\r", "\n": "\\n", "\t": " "}.get(m.group(0), "?"), text)
    text = _TOKEN_RUN.sub(_mask_token, text)
    return _DIGIT_RUN.sub(lambda m: m.group(0)[:2] + "****", text)


def _excerpt(value: bytes, start: int, end: int) -> str:
    """At most 64 characters: the match (cut to 48) with what room is left as context around it."""
    hit = value[start:end].decode("utf-8", "ignore")[:48]
    room = EXCERPT_MAX - len(hit)
    n_before = min(EXCERPT_CONTEXT, room // 2)
    n_after = room - n_before
    # slice bytes generously (a character takes up to 4), then cut in characters
    before = value[max(0, start - 4 * n_before) : start].decode("utf-8", "ignore")
    before = before[len(before) - n_before :] if n_before else ""
    after = value[end : end + 4 * n_after].decode("utf-8", "ignore")[:n_after]
    return redact_excerpt(before + hit + after)[:EXCERPT_MAX]


# --------------------------------------------------------------------------------------------------
# the engine


_LOCATION_SET = frozenset(LOCATIONS)


def _encode(text: str) -> bytes:
    """The scanned form of NUL-joined values: UTF-8, framed and separated by 0xFF."""
    return (_SEP + text + _SEP).encode("utf-8", "replace").replace(_SEP.encode(), _SEP_BYTES)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _base64_variant(value: str, location: str) -> str | None:
    """Decoded text of a base64-wrapped value: the whole value, else its last token.

    Paths carry the payload in a segment (and base64 may itself contain "/"), so up to six path
    suffixes are tried; other values try the part after the last space, comma, colon or equals sign
    ("Basic ...", "data:...;base64,...", "key=...").
    """
    if tf.may_be_base64_text(value) and (decoded := tf.base64_decode_printable(value)) is not None:
        return decoded
    if location == "path":
        path = tf.url_decode(value)
        pos = len(path)
        for _ in range(6):
            pos = path.rfind("/", 0, pos)
            if pos < 0:
                break
            tail = path[pos + 1 :]
            if tf.may_be_base64_text(tail) and (decoded := tf.base64_decode_printable(tail)):
                return decoded
        return None
    if len(value) < 2 * tf.B64_MIN_LEN:
        return None
    body = value.rstrip("=")  # trailing "=" is padding, not a separator
    cut = max(body.rfind(" "), body.rfind(","), body.rfind(":"), body.rfind("="))
    if cut < 0 or len(body) - cut - 1 < tf.B64_MIN_LEN:
        return None
    tail = value[cut + 1 :]
    if tf.may_be_base64_text(tail):
        return tf.base64_decode_printable(tail)
    return None


def _transform_joined(joined: str, count: int, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to all NUL-joined values at once; redo per value if a separator moved."""
    out = fn(joined)
    if out is joined or out.count(_SEP) == count - 1:
        return out
    parts = [fn(v) for v in joined.split(_SEP)]
    return _SEP.join(p.replace(_SEP, " ") if _SEP in p else p for p in parts)


class SignatureEngine:
    """Compiled signatures for one paranoia level. Build once (start-up), scan per request."""

    def __init__(
        self,
        rules: list[Rule],
        scoring: ScoringSpec = DEFAULT_SCORING,
        *,
        paranoia: int = 2,
        engine: str = "auto",
        threshold: int | None = None,
    ) -> None:
        if paranoia not in (1, 2, 3, 4):
            raise ValueError(f"paranoia must be 1-4, not {paranoia!r}")
        if engine not in ("auto", "hyperscan", "re"):
            raise ValueError(f"engine must be 'auto', 'hyperscan' or 're', not {engine!r}")
        if engine == "hyperscan" and _hs is None:
            raise RuntimeError("engine='hyperscan' requested but the hyperscan module cannot be imported")
        self.engine = "hyperscan" if engine != "re" and _hs is not None else "re"
        self.paranoia = paranoia
        self.threshold = threshold if threshold is not None else scoring.thresholds[paranoia]
        self.rules = tuple(r for r in rules if r.paranoia <= paranoia)
        self.scans = 0  # requests scanned (not empty ones): lets a caller see whether it scanned twice
        by_chain: dict[tuple[str, ...], list[Rule]] = {}
        for r in self.rules:
            by_chain.setdefault(r.chain, []).append(r)
        self._groups: list[_ChainGroup] = []
        for chain, group in sorted(by_chain.items(), key=lambda kv: (len(kv[0]), kv[0])):
            matcher: _HsMatcher | _ReMatcher = _HsMatcher(group) if self.engine == "hyperscan" else _ReMatcher(group)
            self._groups.append(_ChainGroup(chain, group, matcher))
        self._wants_b64 = any(r.base64 for r in self.rules)
        # "Would every transform of every chain leave this text as it is?" as a list of cheap tests,
        # or None when some transform has no such test (then the chains always run).
        names = {name for g in self._groups for name in g.chain}
        self._unchanged = [tf.UNCHANGED[n] for n in sorted(names)] if names <= tf.UNCHANGED.keys() else None
        self._b64 = _Base64Finder(self.engine == "hyperscan")
        # All rules (and the base64 start pattern) in one more database: when every transform chain
        # leaves a request's text unchanged -- plain ASCII without escapes, the common case -- one
        # scan of the raw text answers for all chains at once.
        self._all_rules = [r for g in self._groups for r in g.rules]
        self._merged: _HsMatcher | None = None
        if self.engine == "hyperscan" and self._all_rules:
            self._merged = _HsMatcher(self._all_rules, extra=_B64_START)

    @classmethod
    def from_policies(
        cls, policy_dir: str | None = None, *, paranoia: int = 2, engine: str = "auto", threshold: int | None = None
    ) -> SignatureEngine:
        rules, scoring = load_rules(policy_dir)
        return cls(rules, scoring, paranoia=paranoia, engine=engine, threshold=threshold)

    # -- scanning --------------------------------------------------------------------------------
    def scan(self, items: Iterable[ScanItem]) -> ScanResult:
        """Scan the values of one request. Never raises on hostile values; bounded in time."""
        batch = items if isinstance(items, list | tuple) else list(items)
        if len(batch) > MAX_ITEMS:
            batch = batch[:MAX_ITEMS]
        if not batch:
            return ScanResult((), 0, False)
        self.scans += 1
        # Column-wise unpacking keeps the per-value Python work near zero (the budget is ~1 µs a value).
        locs_t, names_t, values_t = zip(*batch, strict=True)
        if not _LOCATION_SET.issuperset(locs_t):
            bad = next(loc for loc in locs_t if loc not in _LOCATION_SET)
            raise ValueError(f"unknown scan location {bad!r}")
        locs, names, values = list(locs_t), list(names_t), list(values_t)
        if max(map(len, values)) > MAX_VALUE_CHARS:
            values = [v[:MAX_VALUE_CHARS] for v in values]
        joined = _SEP.join(values)
        # Values must not contain the separator and must encode to UTF-8 (lone surrogates): checked
        # once on the joined text, repaired value by value only when needed.
        if joined.count(_SEP) != len(values) - 1 or not _encodable(joined):
            values = [tf.safe_text(v.replace(_SEP, " ")) for v in values]
            joined = _SEP.join(values)
        raw_buf = _encode(joined)
        n_real = len(values)
        found: dict[tuple[str, str, str], Match] = {}
        rule_scores: dict[str, int] = {}
        state = _ScanState(locs, names, found, rule_scores)
        if self._unchanged is not None and all(test(joined) for test in self._unchanged):
            texts = [joined] * len(self._groups)  # no transform of any chain has anything to do
        else:
            cache: dict[tuple[str, ...], str] = {(): joined}
            texts = [self._chain_output(cache, g.chain, n_real) for g in self._groups]
        b64_items: list[int] = []
        if self._merged is not None and all(t is joined for t in texts):
            hits = self._merged.candidates(raw_buf)
            extra = len(self._all_rules)
            rule_hits = [h for h in hits if h[0] != extra]
            if rule_hits:
                self._confirm(self._all_rules, rule_hits, raw_buf, state, offset=0, variant=False)
            if self._wants_b64:
                b64_items = _b64_items(raw_buf, [end for i, end in hits if i == extra], locs)
        else:
            if self._wants_b64:
                b64_items = self._b64.candidates(raw_buf, locs)
            self._scan_groups(texts, joined, raw_buf, state, offset=0, variant=False)
        # Base64-wrapped values: their decoded text is scanned as extra values (same location and
        # name), by the rules that ask for it.
        variants: list[str] = []
        for i in b64_items:
            decoded = _base64_variant(values[i], locs[i])
            if decoded is not None:
                locs.append(locs[i])
                names.append(names[i])
                variants.append(tf.safe_text(decoded[:MAX_VALUE_CHARS].replace(_SEP, " ")))
        if variants:
            vjoined = _SEP.join(variants)
            vcache: dict[tuple[str, ...], str] = {(): vjoined}
            vtexts = [self._chain_output(vcache, g.chain, len(variants)) for g in self._groups]
            vbuf = _encode(vjoined)
            self._scan_groups(vtexts, vjoined, vbuf, state, offset=n_real, variant=True)
        score = sum(rule_scores.values())
        matches = tuple(found.values())[:MAX_MATCHES]
        return ScanResult(matches, score, score >= self.threshold)

    def _scan_groups(
        self, texts: list[str], raw_text: str, raw_buf: bytes, state: _ScanState, *, offset: int, variant: bool
    ) -> None:
        last_text, buf = raw_text, raw_buf
        for group, text in zip(self._groups, texts, strict=True):
            if text is not last_text:  # chains that leave the text untouched share one encoding
                buf = _encode(text)
                last_text = text
            hits = group.matcher.candidates(buf)
            if hits:
                self._confirm(group.rules, hits, buf, state, offset=offset, variant=variant)

    @staticmethod
    def _chain_output(cache: dict[tuple[str, ...], str], chain: tuple[str, ...], count: int) -> str:
        # Chains share prefixes (the SQL chain extends the decode chain): reuse the longest one done.
        k = len(chain)
        while chain[:k] not in cache:
            k -= 1
        text = cache[chain[:k]]
        for j in range(k, len(chain)):
            text = _transform_joined(text, count, tf.TRANSFORMS[chain[j]])
            cache[chain[: j + 1]] = text
        return text

    def _confirm(
        self,
        rules: list[Rule],
        hits: list[tuple[int, int]],
        buf: bytes,
        state: _ScanState,
        *,
        offset: int,
        variant: bool,
    ) -> None:
        """Re-check candidate (rule, value) pairs with ``re`` on the single value; record matches.

        Values in ``buf`` are the scan's values ``offset``, ``offset + 1``, ...; ``variant`` says they
        are base64-decoded forms, which only rules with ``base64`` in their chain read.
        """
        seps: list[int] = []
        pos = buf.find(_SEP_B)
        while pos != -1:
            seps.append(pos)
            pos = buf.find(_SEP_B, pos + 1)
        n_items = len(seps) - 1
        locs, names, found = state.locs, state.names, state.found
        pairs: dict[tuple[int, int], None] = {}
        for rule_idx, end in hits:
            if end < 0:  # re matcher: every value is a candidate
                for k in range(n_items):
                    pairs[(rule_idx, k)] = None
                continue
            k = bisect.bisect_left(seps, end - 1) - 1
            if 0 <= k < n_items:
                pairs[(rule_idx, k)] = None
        for rule_idx, k in pairs:
            rule = rules[rule_idx]
            if variant and not rule.base64:
                continue
            loc = locs[offset + k]
            if loc not in rule.targets:
                continue
            name = names[offset + k]
            if loc == "header" and rule.headers is not None and name.lower() not in rule.headers:
                continue
            value = buf[seps[k] + 1 : seps[k + 1]]
            m = rule.rx.search(value)
            if m is None:
                continue
            state.rule_scores[rule.id] = rule.score
            key = (rule.id, loc, name)
            if key not in found and len(found) < MAX_MATCHES:
                found[key] = Match(
                    rule_id=rule.id,
                    category=rule.category,
                    severity=rule.severity,
                    location=loc,
                    name=name[:128],
                    excerpt=_excerpt(value, m.start(), m.end()),
                    owasp=rule.owasp,
                    mitre=rule.mitre,
                    score=rule.score,
                )

    def scan_exchange_parts(
        self,
        path: str | None,
        query_pairs: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        cookies: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body_leaves: Iterable[tuple[str, object]] = (),
    ) -> ScanResult:
        return self.scan(build_items(path, query_pairs, headers, cookies, body_leaves))


# Building the tuple directly skips the NamedTuple's Python-level __new__ (one frame per item).
_new_item: Final = tuple.__new__


def _pairs(obj: Mapping[str, str] | Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    # Lists and tuples first: an isinstance check against the Mapping ABC costs ~0.5 µs a call.
    if type(obj) is list or type(obj) is tuple:
        return obj
    return obj.items() if isinstance(obj, Mapping) else obj


def build_items(
    path: str | None,
    query_pairs: Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    cookies: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body_leaves: Iterable[tuple[str, object]] = (),
) -> list[ScanItem]:
    """The scan items of one request.

    ``query_pairs`` are decoded name/value pairs (``parse_qsl``), ``path`` is the raw (still
    percent-encoded) path, ``body_leaves`` are (JSON path or form name, leaf value) pairs. The
    ``User-Agent`` header becomes a ``user_agent`` item; credentials and framing headers are skipped.
    """
    items: list[ScanItem] = []
    if path:
        items.append(_new_item(ScanItem, ("path", "", path)))
    seen_q: set[str] = set()
    for name, value in query_pairs:
        if name not in seen_q:
            seen_q.add(name)
            items.append(_new_item(ScanItem, ("query_name", name, name)))
        items.append(_new_item(ScanItem, ("query_value", name, value)))
    for name, value in _pairs(headers):
        lname = name.lower()
        if lname == "user-agent":
            items.append(_new_item(ScanItem, ("user_agent", lname, value)))
        elif lname not in SKIP_HEADERS:
            items.append(_new_item(ScanItem, ("header", lname, value)))
    for name, value in _pairs(cookies):
        items.append(_new_item(ScanItem, ("cookie", name, value)))
    seen_k: set[str] = set()
    for key, leaf in body_leaves:
        if key not in seen_k:
            seen_k.add(key)
            items.append(_new_item(ScanItem, ("body_key", key, key)))
        if isinstance(leaf, str):
            items.append(_new_item(ScanItem, ("body_value", key, leaf)))
        elif isinstance(leaf, int | float) and not isinstance(leaf, bool):
            continue  # numbers carry no injection
    return items
