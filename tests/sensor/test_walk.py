"""The bounded payload walk: leaves, path templates, limits, hostile input."""

from __future__ import annotations

import json

import pytest
from multidict import CIMultiDict

from sensor.exchange import Exchange
from sensor.walk import (
    Leaf,
    WalkLimits,
    WalkStats,
    walk_body,
    walk_exchange,
    walk_form,
    walk_json,
    walk_multipart,
    walk_text,
    walk_xml,
)


def _paths(leaves: list[Leaf]) -> list[tuple[str, str, str]]:
    return [(leaf.path, leaf.key, leaf.value) for leaf in leaves]


def test_json_nested_paths_and_keys() -> None:
    body = json.dumps(
        {"users": [{"card_number": "4111", "contact": {"email": "a@b.c"}}], "odd key": "v", "n": 12345678, "k": 5}
    ).encode()
    leaves = list(walk_json(body, "response_body"))
    assert _paths(leaves) == [
        ("$.users[*].card_number", "card_number", "4111"),
        ("$.users[*].contact.email", "email", "a@b.c"),
        ('$["odd key"]', "odd key", "v"),
        ("$.n", "n", "12345678"),  # long integers are leaves, small ones (counts, amounts) are not
    ]
    assert all(leaf.location == "response_body" for leaf in leaves)


def test_array_sampling_is_reported() -> None:
    stats = WalkStats()
    body = json.dumps({"ids": [f"v{i}" for i in range(100_000)]}).encode()
    leaves = list(walk_json(body, "response_body", WalkLimits(array_sample=8), stats))
    assert len(leaves) == 8
    assert stats.sampled and stats.arrays_sampled == 1


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"a": ' + b"9" * 100_000 + b"}",
        b'{"a": "\xff\xfe\xfd", "b": "x@example.com"}',
        b'{"a": "\\u0000\\u0000", "b": "\x00"}',
        b'{"a": "' + b"x" * 1_000_000 + b'"}',
        b'{"a": 1e400, "b": [1, 2',
        b"",
        b"\x00\x01\x02",
        b'"just a string"',
        b"null",
    ],
)
def test_hostile_json_never_raises_and_is_bounded(body: bytes) -> None:
    limits = WalkLimits(max_leaves=100)
    stats = WalkStats()
    leaves = list(walk_json(body, "request_body", limits, stats))
    assert len(leaves) <= 100
    assert all(len(leaf.value) <= limits.max_string for leaf in leaves)


def test_deep_nesting_is_cut_at_max_depth() -> None:
    stats = WalkStats()
    doc: object = "deep"
    for _ in range(50):
        doc = {"a": doc}
    list(walk_json(json.dumps(doc).encode(), "request_body", WalkLimits(max_depth=10), stats))
    assert stats.depth_truncated and stats.truncated


def test_long_string_is_truncated_and_counted() -> None:
    stats = WalkStats()
    leaves = list(
        walk_json(json.dumps({"a": "x" * 10_000}).encode(), "request_body", WalkLimits(max_string=100), stats)
    )
    assert len(leaves[0].value) == 100 and stats.strings_truncated == 1


def test_max_leaves_and_max_keys() -> None:
    stats = WalkStats()
    body = json.dumps({f"k{i}": "value" for i in range(1000)}).encode()
    assert len(list(walk_json(body, "request_body", WalkLimits(max_leaves=10), stats))) == 10
    assert stats.leaves_truncated
    stats = WalkStats()
    assert len(list(walk_json(body, "request_body", WalkLimits(max_keys=20), stats))) == 20
    assert stats.keys_truncated


def test_truncated_json_prefix_keeps_paths() -> None:
    full = json.dumps({"customer": {"email": "jane@example.com", "cards": [{"number": "4111111111111111"}]},
                       "blob": "x" * 5000}).encode()  # fmt: skip
    prefix = full[:120]
    stats = WalkStats()
    leaves = list(walk_json(prefix, "response_body", stats=stats, complete=False))
    assert ("$.customer.email", "email", "jane@example.com") in _paths(leaves)
    assert ("$.customer.cards[*].number", "number", "4111111111111111") in _paths(leaves)
    assert stats.parse_fallback == 1


def test_tolerant_scan_samples_arrays() -> None:
    text = '{"xs": [' + ",".join(f'"v{i}"' for i in range(100)) + ", "
    leaves = list(walk_json(text.encode(), "response_body", WalkLimits(array_sample=5), complete=False))
    assert len(leaves) == 5


def test_form_and_query() -> None:
    leaves = list(walk_form(b"email=a%40b.com&empty=&card=4111+1111", "request_body"))
    assert _paths(leaves) == [("email", "email", "a@b.com"), ("card", "card", "4111 1111")]


def test_form_with_too_many_fields_is_bounded() -> None:
    stats = WalkStats()
    body = "&".join(f"k{i}=v" for i in range(10_000))
    assert len(list(walk_form(body, "query", WalkLimits(max_params=50), stats))) == 50
    assert stats.keys_truncated


def test_multipart_fields_and_binary_upload_skipped() -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="email"\r\n\r\njane@example.com\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="avatar"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\x00\x01\r\n"
        b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--XyZ--\r\n'
    )
    leaves = list(walk_multipart(body, "XyZ", "request_body"))
    assert _paths(leaves) == [("email", "email", "jane@example.com"), ("note", "note", "hello")]


def test_xml_elements_and_attributes() -> None:
    body = b'<?xml version="1.0"?><users><user id="7"><email>a@b.com</email><ssn>123-45-6780</ssn></user></users>'
    assert _paths(list(walk_xml(body, "response_body"))) == [
        ("/users/user/@id", "id", "7"),
        ("/users/user/email", "email", "a@b.com"),
        ("/users/user/ssn", "ssn", "123-45-6780"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>',
        b'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
        b"<a><!ENTITY x 'y'></a>",
    ],
)
def test_xml_with_doctype_or_entity_is_not_parsed(body: bytes) -> None:
    stats = WalkStats()
    leaves = list(walk_xml(body, "request_body", stats=stats))
    assert stats.doctype_rejected == 1
    assert all(leaf.path == "" for leaf in leaves)  # read as plain text, never expanded
    assert not any("root:" in leaf.value for leaf in leaves)


def test_truncated_xml_yields_what_was_parsed() -> None:
    body = b"<users><user><email>a@b.com</email><name>Jane</name></user><user><email>c@d"
    leaves = list(walk_xml(body, "response_body"))
    assert ("/users/user/email", "email", "a@b.com") in _paths(leaves)


def test_deep_xml_is_bounded() -> None:
    body = b"<a>" * 10_000 + b"x" + b"</a>" * 10_000
    stats = WalkStats()
    assert list(walk_xml(body, "request_body", WalkLimits(max_depth=16), stats)) == []
    assert stats.depth_truncated and stats.truncated


def test_text_is_chunked() -> None:
    text = "line with a@b.com\n" * 1000
    leaves = list(walk_text(text, "response_body", WalkLimits(max_string=1000)))
    assert all(len(leaf.value) <= 1000 for leaf in leaves)
    assert sum(leaf.value.count("a@b.com") for leaf in leaves) == 1000


@pytest.mark.parametrize(
    ("content_type", "body", "expected_paths"),
    [
        ("application/json; charset=utf-8", b'{"a": "x"}', ["$.a"]),
        ("application/vnd.api+json", b'{"a": "x"}', ["$.a"]),
        ("application/x-www-form-urlencoded", b"a=x", ["a"]),
        ("application/soap+xml", b"<a>x</a>", ["/a"]),
        ("text/plain", b"hello", [""]),
        (None, b'  {"a": "x"}', ["$.a"]),
        (None, b"<a>x</a>", ["/a"]),
        ("image/png", b"\x89PNG", []),
        ("application/octet-stream", b"abc", []),
    ],
)
def test_body_dispatch(content_type: str | None, body: bytes, expected_paths: list[str]) -> None:
    assert [leaf.path for leaf in walk_body(body, content_type, "request_body")] == expected_paths


def test_compressed_body_is_skipped() -> None:
    stats = WalkStats()
    assert (
        list(walk_body(b"\x1f\x8b...", "application/json", "response_body", stats=stats, content_encoding="gzip")) == []
    )
    assert stats.skipped_bodies == 1


def test_walk_exchange_covers_every_location() -> None:
    ex = Exchange(
        request_id="r1",
        method="POST",
        path="/users/jane@example.com/cards",
        query_string="token=abc&x=1",
        request_headers=CIMultiDict(
            {
                "Authorization": "Bearer t0k3n",
                "Cookie": "sid=abc; theme=dark",
                "Content-Type": "application/json",
                "User-Agent": "curl",
            }
        ),
        peer_ip="10.0.0.1",
        request_body=b'{"email": "a@b.c"}',
        request_body_size=18,
        status=200,
        response_headers=CIMultiDict({"Content-Type": "application/json", "Set-Cookie": "session=s3cr3t; HttpOnly"}),
        response_body=b'{"ok": "yes", "more": "',
        response_body_size=10_000,
    )
    stats = WalkStats()
    leaves = list(walk_exchange(ex, stats=stats))
    got = {(leaf.location, leaf.path, leaf.key) for leaf in leaves}
    assert ("path", "path[1]", "users") in got
    assert ("query", "token", "token") in got
    assert ("header", "authorization", "authorization") in got
    assert ("header", "cookie.sid", "sid") in got
    assert ("header", "cookie.session", "session") in got
    assert ("request_body", "$.email", "email") in got
    assert ("response_body", "$.ok", "ok") in got
    assert not any(leaf.key == "user-agent" for leaf in leaves)
    assert stats.body_prefix == 1 and stats.truncated


@pytest.mark.parametrize(
    "text",
    ["a=1&b=2", "a=&b", "=x&y=", "a=1=2&&b=3", "", "&", "a=1;b=2", "x=%20&y=+", "a=b&a=c", "q=%E2%82%AC&r=a+b",
     "&".join(f"k{i}=v" for i in range(40))],
)
def test_query_pairs_match_parse_qsl(text: str) -> None:
    """The undecoded fast path of the query/form parser answers exactly what parse_qsl does."""
    from urllib.parse import parse_qsl

    from sensor.walk import DEFAULT_LIMITS, WalkStats, _pairs

    expected = parse_qsl(text, keep_blank_values=False, max_num_fields=DEFAULT_LIMITS.max_params)
    assert _pairs(text, DEFAULT_LIMITS, WalkStats()) == expected
