"""Decoding transforms: table-driven cases per transform, bounds, hostile input."""

# ruff: noqa: RUF001  (fullwidth and other look-alike characters are the test data)
from __future__ import annotations

import base64
import random
import time

import pytest

from sensor import transforms as tf


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain", "plain"),
        ("%27%20OR%201%3D1", "' OR 1=1"),
        ("%2527", "'"),  # double
        ("%252527", "'"),  # triple
        ("%25252527", "%27"),  # a 4th layer is left: at most 3 rounds
        ("%u003cscript%u003e", "<script>"),
        ("%zz%2", "%zz%2"),  # malformed escapes stay
        ("%c0%af", "\ufffd\ufffd"),  # overlong UTF-8 never raises
        ("%uD800", "\ufffd"),  # a lone surrogate is replaced
        ("a+b", "a+b"),  # "+" is the query parser's business
        ("caf%C3%A9", "café"),
    ],
)
def test_url_decode(raw: str, expected: str) -> None:
    assert tf.url_decode(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("&lt;script&gt;", "<script>"),
        ("&#x3C;svg&#62;", "<svg>"),
        ("&#106;avascript:", "javascript:"),
        ("&amp;lt;b&amp;gt;", "<b>"),  # double-encoded, two rounds
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("no entities", "no entities"),
        ("&#0;", "\ufffd"),
    ],
)
def test_html_entity(raw: str, expected: str) -> None:
    assert tf.html_entity(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("＜ｓｃｒｉｐｔ＞", "<script>"),
        ("ＳＥＬＥＣＴ", "SELECT"),
        ("．．／", "../"),
        ("\u3000", " "),
        ("①⑥⑨", "169"),
        ("ascii", "ascii"),
    ],
)
def test_nfkc(raw: str, expected: str) -> None:
    assert tf.nfkc(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [("SeLeCt", "select"), ("ÀB", "àb"), ("", "")])
def test_lowercase(raw: str, expected: str) -> None:
    assert tf.lowercase(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("UNION/**/SELECT", "UNION SELECT"),
        ("UN/*x*/ION", "UN ION"),
        ("/*!50000UNION*/ SELECT", " UNION  SELECT"),
        ("1 /* unterminated", "1  "),
        ("admin'--", "admin'--"),  # line comments are evidence, kept
        ("a * b", "a * b"),
    ],
)
def test_sql_comments(raw: str, expected: str) -> None:
    assert tf.sql_comments(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a  b", "a b"),
        ("a\t\nb", "a b"),
        ("a\u00a0b", "a b"),
        ("a\u3000\u3000b", "a b"),
        ("one space", "one space"),
    ],
)
def test_compress_whitespace(raw: str, expected: str) -> None:
    assert tf.compress_whitespace(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\\u003cscript\\u003e", "<script>"),
        ('\\"quoted\\"', '"quoted"'),
        ("a\\r\\nb", "a\r\nb"),
        ("C:\\boot.ini", "C:\\boot.ini"),  # Windows paths keep their backslashes
        ("\\\\host\\share", "\\\\host\\share"),
        ("\\ud800", "\ufffd"),
        ("\\u12", "\\u12"),
    ],
)
def test_json_unescape(raw: str, expected: str) -> None:
    assert tf.json_unescape(raw) == expected


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_b64("<script>alert(1)</script>"), "<script>alert(1)</script>"),
        (_b64("' OR 1=1--"), "' OR 1=1--"),
        (base64.urlsafe_b64encode(b"${jndi:ldap://x/a}??").decode(), "${jndi:ldap://x/a}??"),
        (_b64("' OR 1=1--").rstrip("="), "' OR 1=1--"),  # unpadded
        ("QUJD", None),  # shorter than 8
        ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", None),
        ("cus_9s6XKzkNRiz8i3", None),  # an id in the base64 alphabet: decodes to binary
        ("description", None),
        ("not base64!", None),
    ],
)
def test_base64_decode_printable(raw: str, expected: str | None) -> None:
    assert tf.base64_decode_printable(raw) == expected
    assert tf.base64_decode(raw) == (expected if expected is not None else raw)


def test_may_be_base64_text_has_no_false_negatives_for_ascii_text() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(6, 40)))
        encoded = base64.b64encode(text.encode()).decode()
        assert tf.may_be_base64_text(encoded), text


@pytest.mark.parametrize("name", sorted(tf.TRANSFORMS))
@pytest.mark.parametrize(
    "hostile",
    [
        "%25" * 300_000 + "27",  # ~1 MB, deep encoding loop
        "\ud800\udfff" * 1000,  # lone surrogates
        "&amp;" * 100_000,
        "/*" * 100_000,
        "\\u0000" * 50_000,
        "\u00a0 " * 200_000,
        "ﷺ" * 10_000,  # NFKC expands this code point 18x
        "A" * 1_000_000,
    ],
    ids=["pct-loop", "surrogates", "entities", "comments", "json-nul", "nbsp", "nfkc-expand", "1MB"],
)
def test_transforms_never_raise_and_stay_bounded(name: str, hostile: str) -> None:
    fn = tf.TRANSFORMS[name]
    t0 = time.perf_counter()
    out = fn(hostile)
    assert time.perf_counter() - t0 < 2.0
    assert len(out) <= tf.MAX_EXPANSION * len(hostile) + 16
    tf.safe_text(out).encode("utf-8")


@pytest.mark.parametrize(
    "name", ["url_decode", "html_entity", "nfkc", "sql_comments", "compress_whitespace", "json_unescape"]
)
def test_joined_application_equals_per_value(name: str) -> None:
    """The engine applies transforms to NUL-joined values; per value gives the same when no NUL moved."""
    fn = tf.TRANSFORMS[name]
    values = ["%2527 a", "&lt;b&gt;", "ｓｅｌｅｃｔ", "x/**/y", "a  b", "\\u003c", "plain", "%00", "/* open"]
    joined = "\x00".join(values)
    out = fn(joined)
    if out.count("\x00") == len(values) - 1:
        assert out.split("\x00") == [fn(v) for v in values]


def test_apply_chain_and_safe_text() -> None:
    assert tf.apply_chain("%253Cscript%253E", ("url_decode", "lowercase")) == "<script>"
    assert tf.safe_text("a\ud800b").encode("utf-8")
    assert tf.safe_text("ok") == "ok"


@pytest.mark.parametrize("name", sorted(tf.UNCHANGED))
def test_unchanged_tests_never_skip_a_transform_that_would_change_the_text(name: str) -> None:
    """The engine skips every chain when each transform's UNCHANGED test says so: wherever the test
    says "unchanged", the transform must indeed return its input."""
    samples = [
        "plain", "/api/items/42", "name,price", "a b  c", "UNION SELECT 1", "Caf\u00e9", "\uff1cscript\uff1e",
        "%3Cscript%3E", "&lt;b&gt;", "a\\u003cb", "x/**/y", "1*2", "%", "&", "\\", "*", "", "\x00",
    ]
    fn, unchanged = tf.TRANSFORMS[name], tf.UNCHANGED[name]
    checked = 0
    for s in samples:
        if unchanged(s):
            assert fn(s) == s, (name, s)
            checked += 1
    assert checked >= 5  # the samples do exercise the "unchanged" side
