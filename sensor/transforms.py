"""Decoding transforms applied to values before signatures look at them.

Every transform is a pure ``str -> str`` function with a bounded cost: linear in the input, with a
fixed number of rounds and an output-size cap, so a hostile value (deep encoding loops, 1 MB of
``%25``, lone surrogates) can neither raise nor make a request slow. Each one starts with a cheap
"nothing to do" test because the common case -- a plain ASCII id, a number, a name -- must cost
next to nothing (the signature budget is about one microsecond per value).

The engine (``sensor.signatures``) applies these to one joined buffer of all values of a request at
once, separated by NUL; the transforms are written so that a NUL is never created or removed except
by decoding an explicit ``%00`` / ``\\u0000`` (the engine detects that and falls back to per-value
application).
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from collections.abc import Callable

MAX_URL_DECODE_ROUNDS = 3  # double/triple encoding is common; more rounds is a decoding loop
MAX_EXPANSION = 4  # NFKC and entity decoding may grow text; never beyond 4x the input
B64_MIN_LEN = 8
B64_MAX_LEN = 16 * 1024

_PCT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_PCT_U = re.compile(r"%[uU]([0-9A-Fa-f]{4})")


def _decode_pct_run(m: re.Match[str]) -> str:
    # A run of %XX escapes is one UTF-8 byte sequence; invalid sequences become U+FFFD rather than
    # raising (overlong "%c0%af" stays visible to the rules that look for it in the raw value).
    return bytes.fromhex(m.group(0).replace("%", "")).decode("utf-8", "replace")


def _decode_pct_u(m: re.Match[str]) -> str:
    # IIS-style %uXXXX; a lone surrogate is replaced so the result always encodes to UTF-8.
    cp = int(m.group(1), 16)
    return "\ufffd" if 0xD800 <= cp <= 0xDFFF else chr(cp)


def url_decode(s: str) -> str:
    """Percent-decode (``%XX`` as UTF-8 and ``%uXXXX``) until stable, at most 3 rounds.

    ``+`` is left alone: the query parser already turned it into a space where it meant one, and in
    paths and JSON it is a literal plus.
    """
    for _ in range(MAX_URL_DECODE_ROUNDS):
        if "%" not in s:
            break
        out = _PCT_RUN.sub(_decode_pct_run, s)
        if "%u" in out or "%U" in out:
            out = _PCT_U.sub(_decode_pct_u, out)
        if out == s:
            break
        s = out
    return s


def html_entity(s: str) -> str:
    """Decode HTML character references (named, decimal, hex), twice at most (``&amp;lt;``)."""
    for _ in range(2):
        if "&" not in s:
            break
        out = html.unescape(s)
        if out == s:
            break
        if len(out) > MAX_EXPANSION * len(s):  # cannot happen with html.unescape, kept as a guard
            break
        s = out
    return s


def nfkc(s: str) -> str:
    """Unicode NFKC: fullwidth forms (U+FF1C ...) become ASCII, ligatures and superscripts fold."""
    if s.isascii():
        return s
    try:
        out = unicodedata.normalize("NFKC", s)
    except (ValueError, UnicodeError):  # pragma: no cover - normalize accepts any str today
        return s
    # A few code points expand 18x (U+FDFA); cap so one value cannot inflate the scan buffer.
    return out if len(out) <= MAX_EXPANSION * len(s) + 16 else out[: MAX_EXPANSION * len(s)]


def lowercase(s: str) -> str:
    return s.lower()


# /* ... */ comments, unterminated ones run to the end of the value. MySQL "version comments"
# /*!50000UNION*/ execute their content, so the content is kept and only the markers go.
_SQL_COMMENT = re.compile(r"/\*(!\d{0,6})?(.*?)(?:\*/|\Z)", re.DOTALL)


def _sql_comment_repl(m: re.Match[str]) -> str:
    return f" {m.group(2)} " if m.group(1) is not None else " "


def sql_comments(s: str) -> str:
    """Replace inline SQL comments ``/**/`` by a space (``UNION/**/SELECT`` -> ``UNION SELECT``).

    Line comments (``--``, ``#``) are kept on purpose: they are themselves evidence (``admin'--``).
    """
    if "*" not in s:  # one memchr; a two-character search for "/*" walks the text ~100x slower
        return s
    return _SQL_COMMENT.sub(_sql_comment_repl, s)


# Every Unicode whitespace except NUL (the engine's value separator is not whitespace anyway).
_WS_RUN = re.compile(r"\s{2,}|[\t\n\r\x0b\x0c\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


_WS_NON_ASCII = re.compile(r"[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def compress_whitespace(s: str) -> str:
    """Collapse each run of whitespace (tabs, newlines, NBSP, ...) into one space."""
    # The regex has no literal prefix, so it walks every character; plain text with single spaces
    # (the common case) is recognised with a few substring searches instead.
    plain = "  " not in s and "\t" not in s and "\n" not in s and "\r" not in s and "\x0b" not in s and "\x0c" not in s
    if plain and (s.isascii() or not _WS_NON_ASCII.search(s)):
        return s
    return _WS_RUN.sub(" ", s)


# Only escapes that change meaning for the rules are decoded: \uXXXX, \", \/, \n and \r. The
# others (\\, \b, \f, \t) are left alone because they are also how Windows paths and UNC names
# look ("C:\boot.ini", "\\host\share\temp"), and decoding them would hide those paths.
_JSON_ESC = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([\"/nr]))")
_JSON_SIMPLE = {'"': '"', "/": "/", "n": "\n", "r": "\r"}


def _json_esc_repl(m: re.Match[str]) -> str:
    hexcode = m.group(1)
    if hexcode is None:
        return _JSON_SIMPLE[m.group(2)]
    cp = int(hexcode, 16)
    return "\ufffd" if 0xD800 <= cp <= 0xDFFF else chr(cp)


def json_unescape(s: str) -> str:
    """Decode JSON string escapes left inside a value (``\\u003cscript\\u003e``, ``\\"``), one round.

    Surrogates (paired or not) become U+FFFD, which keeps the result encodable; attack text is ASCII
    after decoding, so nothing is lost for the rules.
    """
    if "\\" not in s:
        return s
    return _JSON_ESC.sub(_json_esc_repl, s)


_B64_STD = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_B64_URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _printable_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    # Tabs and newlines are fine (payloads span lines); other control characters mean binary.
    visible = text.replace("\n", "").replace("\r", "").replace("\t", "")
    if not visible.isprintable():
        return None
    return text


# Base64 of ASCII text: every 4-character group starts with the top 6 bits of a byte below 0x80,
# i.e. with one of the first 32 alphabet letters, and its second character carries the high nibble
# of the next byte (0-7), which only 32 letters can. Checking these rejects ids, hashes and words in
# a fraction of the cost of decoding them (base64 of non-ASCII text is not tried).
_NOT_GROUP_LEAD = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef")
_GROUP_SECOND = frozenset("ABCDEFGHQRSTUVWXghijklmnwxyz0123")


def may_be_base64_text(s: str) -> bool:
    """Cheap pre-test for :func:`base64_decode_printable` (no false negatives for ASCII text)."""
    return (
        len(s) >= B64_MIN_LEN
        and not s[::4].translate(_NOT_GROUP_LEAD)
        and s[1] in _GROUP_SECOND
        and s[5] in _GROUP_SECOND
    )


def base64_decode_printable(s: str) -> str | None:
    """The text a base64 value (standard or URL-safe, padded or not) stands for, or None.

    Only whole values of at least 8 characters are tried, and only a decoding into printable UTF-8
    text counts: ids and hashes that happen to use the base64 alphabet decode into binary and are
    rejected, so are images and other binary payloads.
    """
    v = s.strip()
    n = len(v)
    if n < B64_MIN_LEN or n > B64_MAX_LEN:
        return None
    if _B64_STD.fullmatch(v):
        altchars = None
    elif _B64_URL.fullmatch(v):
        altchars = b"-_"
    else:
        return None
    body = v.rstrip("=")
    if len(body) % 4 == 1:  # impossible length for base64
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _printable_text(raw)


def base64_decode(s: str) -> str:
    """Transform form of :func:`base64_decode_printable`: the decoded text, else the value itself."""
    decoded = base64_decode_printable(s)
    return s if decoded is None else decoded


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "url_decode": url_decode,
    "html_entity": html_entity,
    "nfkc": nfkc,
    "lowercase": lowercase,
    "sql_comments": sql_comments,
    "compress_whitespace": compress_whitespace,
    "json_unescape": json_unescape,
    "base64": base64_decode,
}


# For each transform, a test that it would return its input unchanged: each transform's own "nothing
# to do" test above, so the engine can skip a whole chain over a plain request at once. A transform
# without an entry is always applied.
UNCHANGED: dict[str, Callable[[str], bool]] = {
    "url_decode": lambda s: "%" not in s,
    "html_entity": lambda s: "&" not in s,
    "nfkc": str.isascii,
    "sql_comments": lambda s: "*" not in s,
    "json_unescape": lambda s: "\\" not in s,
}


def apply_chain(s: str, chain: tuple[str, ...]) -> str:
    """Apply a named chain to one value (used per value; the engine batches the same functions)."""
    for name in chain:
        s = TRANSFORMS[name](s)
    return s


def safe_text(s: str) -> str:
    """Replace lone surrogates so the value can always be encoded as UTF-8 (never raises)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")
    return s
