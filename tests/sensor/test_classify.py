"""Data classification: validators, the policy file, the classifier, quality goals, privacy."""

from __future__ import annotations

import binascii
import json
import textwrap
from pathlib import Path

import pytest
from multidict import CIMultiDict

import sensor.classify as classify_mod
from sensor import validators as v
from sensor.classify import (
    Classifier,
    DatatypesError,
    datatype_info,
    hyperscan_available,
    key_tokens,
    load_datatypes,
)
from sensor.exchange import Exchange
from sensor.walk import walk_json
from tests.sensor.classify_corpus import CHECKSUM_TYPES, evaluate, generate, markdown_table

needs_hyperscan = pytest.mark.skipif(not hyperscan_available(), reason="hyperscan not installed")

JWT_IO = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _github(body: str) -> str:
    return "ghp_" + body + v._base62(binascii.crc32(body.encode()), 6)


GH_TOKEN = _github("aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1")

# --------------------------------------------------------------------------------------------------
# Validators: well-known test numbers and near misses

VALID = [
    # payment cards: the networks' published test numbers
    ("credit_card", "4111111111111111"), ("credit_card", "4012888888881881"), ("credit_card", "4222222222222"),
    ("credit_card", "5555555555554444"), ("credit_card", "5105105105105100"), ("credit_card", "2223003122003222"),
    ("credit_card", "378282246310005"), ("credit_card", "371449635398431"), ("credit_card", "6011111111111117"),
    ("credit_card", "6011000990139424"), ("credit_card", "3530111333300000"), ("credit_card", "3566002020360505"),
    ("credit_card", "30569309025904"), ("credit_card", "38520000023237"), ("credit_card", "6200000000000005"),
    ("credit_card", "4111 1111 1111 1111"), ("credit_card", "4111-1111-1111-1111"),
    ("credit_card", "3782 822463 10005"),
    # IBAN: the ECBS / national examples
    ("iban", "GB82WEST12345698765432"), ("iban", "DE89370400440532013000"), ("iban", "FR1420041010050500013M02606"),
    ("iban", "NL91ABNA0417164300"), ("iban", "GB82 WEST 1234 5698 7654 32"), ("iban", "BE68539007547034"),
    ("iban", "PL61109010140000071219812874"), ("iban", "ES9121000418450200051332"), ("iban", "NO9386011117947"),
    ("iban", "IT60X0542811101000000123456"), ("iban", "SE4550000000058398257466"), ("iban", "CH9300762011623852957"),
    ("bic", "DEUTDEFF"), ("bic", "DEUTDEFF500"), ("bic", "NWBKGB2L"), ("bic", "COBADEFFXXX"), ("bic", "BOFAUS3N"),
    ("aba_routing", "011000015"), ("aba_routing", "021000021"), ("aba_routing", "111000025"),
    ("aba_routing", "122105155"), ("aba_routing", "110000000"),
    # identity
    ("us_ssn", "536-22-1234"), ("us_ssn", "123-45-6780"), ("us_ssn", "536221234"),
    ("us_itin", "912-70-1234"), ("us_itin", "900-94-0000"),
    ("uk_nino", "JG103759A"), ("uk_nino", "CE 12 34 56 D"), ("uk_nino", "ab123456c"),
    ("uk_nhs", "9434765919"), ("uk_nhs", "943 476 5919"), ("uk_nhs", "4010232137"),
    ("nl_bsn", "111222333"), ("nl_bsn", "123456782"),
    ("pl_pesel", "44051401359"), ("pl_pesel", "02070803628"),
    ("se_personnummer", "811228-9874"), ("se_personnummer", "19811228-9874"), ("se_personnummer", "670919-9530"),
    ("es_dni", "12345678Z"), ("es_dni", "X1234567L"), ("es_dni", "Y1234567X"), ("es_dni", "Z1234567R"),
    ("it_codice_fiscale", "RSSMRA85T10A562S"), ("it_codice_fiscale", "MRTMTT91D08F205J"),
    ("de_steuer_id", "86095742719"), ("de_steuer_id", "47036892816"), ("de_steuer_id", "36 574 261 809"),
    ("fr_insee", "295109912611193"), ("fr_insee", "1 84 12 76 451 089 46"), ("fr_insee", "253072B07300470"),
    # credentials
    ("jwt", JWT_IO), ("github_token", GH_TOKEN),
    ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"), ("aws_secret_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("azure_storage_key", AZURITE_KEY), ("entropy", "Zx8f3kP0qLm9vT2bQ7"),
    ("pem_private_key",
     "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEpAIBAAKCAQEA" * 5 + "\n-----END RSA PRIVATE KEY-----"),
    # personal / network
    ("phone", "+14155552671"), ("phone", "+44 20 7946 0958"), ("phone", "+49 30 901820"),
    ("phone", "+33 1 42 68 53 00"),
    ("phone", "020 7946 0958"), ("phone", "06 12345678"),
    ("email", "jane.doe@example.com"), ("email", "a+b@sub.example.co.uk"),
    ("birth_date", "1985-04-12"), ("birth_date", "12.04.1985"), ("birth_date", "1985-04-12T00:00:00Z"),
    ("ip_public", "8.8.8.8"), ("ip_public", "2001:4860:4860::8888"),
    ("ip_private", "10.0.0.1"), ("ip_private", "192.168.1.1"), ("ip_private", "fd00::1"), ("ip_private", "100.64.0.1"),
]  # fmt: skip

INVALID = [
    ("credit_card", "4111111111111112"), ("credit_card", "1234567812345678"), ("credit_card", "4111 11 1111111111"),
    ("credit_card", "0000000000000000"), ("credit_card", "9111111111111113"), ("credit_card", "4111 1111-1111 1111"),
    ("credit_card", "411111111111111"),  # Visa has no 15-digit numbers
    ("iban", "GB82WEST12345698765433"), ("iban", "DE89370400440532013001"), ("iban", "XX89370400440532013000"),
    ("iban", "DE8937040044053201300"), ("iban", "DE89 3704 0044 0532 0130 0"),
    ("bic", "DEUTXXFF"), ("bic", "ABCDEFGH"), ("bic", "DEUTDE1O"), ("bic", "DEUT1EFF"),
    ("bic_unhinted", "DEUTDEFF"), ("bic_unhinted", "TRANSFERRED"),
    ("aba_routing", "021000022"), ("aba_routing", "123456789"), ("aba_routing", "991000021"),
    ("us_ssn", "000-12-3456"), ("us_ssn", "666-12-3456"), ("us_ssn", "900-12-3456"), ("us_ssn", "123-00-4567"),
    ("us_ssn", "123-45-0000"), ("us_ssn", "078-05-1120"),
    ("us_itin", "912-40-1234"), ("us_itin", "812-70-1234"), ("us_itin", "912-93-1234"),
    ("uk_nino", "BG123456A"), ("uk_nino", "GB123456A"), ("uk_nino", "AO123456A"), ("uk_nino", "DA123456A"),
    ("uk_nino", "AB123456E"), ("uk_nino", "QQ123456C"),
    ("uk_nhs", "9434765918"), ("uk_nhs", "0000000000"), ("uk_nhs", "943476591"),
    ("nl_bsn", "123456789"), ("nl_bsn", "111222334"), ("nl_bsn", "000000000"),
    ("pl_pesel", "44051401358"), ("pl_pesel", "44133101359"),
    ("se_personnummer", "811228-9873"), ("se_personnummer", "811328-9874"),
    ("es_dni", "12345678A"), ("es_dni", "X1234567A"),
    ("it_codice_fiscale", "RSSMRA85T10A562T"), ("it_codice_fiscale", "RSSMRA85Z10A562S"),
    ("de_steuer_id", "36574261808"), ("de_steuer_id", "12345678901"), ("de_steuer_id", "01234567890"),
    ("fr_insee", "295109912611194"), ("fr_insee", "395109912611193"), ("fr_insee", "295139912611193"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9"), ("jwt", "eyJub3QganNvbg.eyJ4IjoxfQ.sig"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.bm90anNvbg.x"),
    ("github_token", GH_TOKEN[:-1] + ("A" if GH_TOKEN[-1] != "A" else "B")), ("github_token", "ghp_" + "a" * 36),
    ("aws_access_key_id", "AKIAAAAAAAAAAAAAAAAA"), ("aws_access_key_id", "AKIA1234567890123456"),
    ("aws_secret_key", "a" * 40), ("azure_storage_key", "A" * 86 + "=="),
    ("entropy", "aaaaaaaaaaaaaaaaaaaa"), ("entropy", "password"), ("entropy", "hello world this is text"),
    ("pem_private_key", "-----BEGIN PRIVATE KEY-----\nshort\n-----END PRIVATE KEY-----"),
    ("phone", "+1 000 000 0000"), ("phone", "+999 1234567"), ("phone", "+44 12"), ("phone", "1700000000000"),
    ("email", "logo@2x.png"), ("email", "a..b@example.com"), ("email", "x@localhost"), ("email", ".a@example.com"),
    ("birth_date", "2099-01-01"), ("birth_date", "1985-13-01"), ("birth_date", "1850-01-01"), ("birth_date", "soon"),
    ("ip_public", "10.0.0.1"), ("ip_public", "999.1.1.1"), ("ip_private", "8.8.8.8"), ("ip_private", "0.0.0.0"),
]  # fmt: skip


@pytest.mark.parametrize(("validator", "value"), VALID)
def test_validator_accepts(validator: str, value: str) -> None:
    assert v.VALIDATORS[validator](value)


@pytest.mark.parametrize(("validator", "value"), INVALID)
def test_validator_rejects(validator: str, value: str) -> None:
    assert not v.VALIDATORS[validator](value)


@pytest.mark.parametrize("validator", sorted(v.VALIDATORS))
@pytest.mark.parametrize("value", ["", "\x00", "\ud800", "٣٣٣٣٣٣٣٣٣", "9" * 5000, "-" * 100, "é" * 20])
def test_validators_never_raise(validator: str, value: str) -> None:
    assert isinstance(v.VALIDATORS[validator](value), bool)


# --------------------------------------------------------------------------------------------------
# The policy file


def _write(tmp_path: Path, text: str, name: str = "custom.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_bundled_file_loads_and_every_category_is_known() -> None:
    specs = load_datatypes()
    assert len({s.id for s in specs}) == len(specs) >= 35
    assert {s.category for s in specs} <= set(classify_mod.CATEGORIES)
    assert not next(s for s in specs if s.id == "ip_public").enabled


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        (
            """\
            version: 1
            datatypes:
              - id: foo
                name: Foo
                category: secretive
                patterns: [{regex: 'x'}]
            """,
            5,
            "category",
        ),
        (
            """\
            version: 1
            datatypes:
              - id: foo
                name: Foo
                category: personal
                patterns:
                  - regex: '([a-z'
            """,
            7,
            "bad regex",
        ),
        (
            """\
            version: 1
            datatypes:
              - id: foo
                name: Foo
                category: personal
                validator: no_such_check
                patterns: [{regex: 'x'}]
            """,
            6,
            "unknown validator",
        ),
        (
            """\
            version: 1
            datatypes:
              - id: foo
                name: Foo
                category: personal
                patterns: [{regex: 'x', key_required: true}]
            """,
            6,
            "needs key hints",
        ),
        (
            """\
            version: 1
            datatypes:
              - id: foo
                name: Foo
                category: personal
                patterns: [{regex: 'x'}]
              - id: foo
                name: Foo again
                category: personal
                patterns: [{regex: 'y'}]
            """,
            7,
            "duplicate",
        ),
        (
            """\
            version: 1
            datatypes:
              - id: foo
                name: Foo
                category: personal
                patterns: [{regex: 'x'}]
                surprise: true
            """,
            3,
            "surprise",
        ),
        ("version: 1\ndatatypes: [\n", 3, "invalid YAML"),
    ],
)
def test_bad_files_fail_with_file_line_and_problem(tmp_path: Path, body: str, line: int, problem: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(DatatypesError) as err:
        load_datatypes([path])
    assert str(err.value).startswith(f"{path}:{line}:"), str(err.value)
    assert problem in str(err.value)


@needs_hyperscan
def test_value_pattern_must_compile_in_hyperscan(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        version: 1
        datatypes:
          - id: foo
            name: Foo
            category: personal
            patterns:
              - regex: '(?<=x)abc'
        """,
    )
    with pytest.raises(DatatypesError, match=r":7: .*scanner"):
        load_datatypes([path])


CUSTOM = """\
version: 1
datatypes:
  - id: employee_id
    name: Employee ID
    category: identity
    keys: [employee_id, staff_number]
    patterns:
      - regex: '\\bEMP-[0-9]{6}\\b'
      - regex: '^[0-9]{6}$'
        key_required: true
  - id: credit_card
    name: Card (retuned)
    category: financial
    validator: credit_card
    patterns:
      - regex: '\\b4[0-9]{15}\\b'
"""


def test_custom_types_merge_and_override(tmp_path: Path) -> None:
    path = _write(tmp_path, CUSTOM)
    specs = load_datatypes([path])
    c = Classifier(specs)
    assert datatype_info("employee_id", specs) == ("Employee ID", "identity")
    assert c.datatype_info("credit_card") == ("Card (retuned)", "financial")
    body = json.dumps({"ref": "EMP-123456", "staff_number": "654321", "other": "654321",
                       "visa": "4111111111111111", "mc": "5555555555554444"}).encode()  # fmt: skip
    found = {(d.type, d.path) for d in c.classify_leaves(walk_json(body, "request_body"))}
    assert found == {("employee_id", "$.ref"), ("employee_id", "$.staff_number"), ("credit_card", "$.visa")}


def test_from_policies_reads_a_policy_dir(tmp_path: Path) -> None:
    (tmp_path / "datatypes.d").mkdir()
    _write(tmp_path / "datatypes.d", CUSTOM, "employees.yaml")
    c = Classifier.from_policies(str(tmp_path))
    assert "employee_id" in c.type_ids
    assert "email" in c.type_ids


def test_datatype_info_for_the_collector() -> None:
    assert datatype_info("credit_card") == ("Payment card number", "financial")
    assert datatype_info("ip_public") == ("Public IP address", "network")
    assert datatype_info("nope") is None


@pytest.mark.parametrize(
    ("key", "tokens"),
    [
        ("billingPhoneNumber", ("billing", "phone", "number")),
        ("billing_phone-number", ("billing", "phone", "number")),
        ("X-API-Key", ("x", "api", "key")),
        ("address_line1", ("address", "line1")),
        ("", ()),
    ],
)
def test_key_tokens(key: str, tokens: tuple[str, ...]) -> None:
    assert key_tokens(key) == tokens


# --------------------------------------------------------------------------------------------------
# The classifier


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.from_policies(None)


def _found(c: Classifier, body: dict[str, object]) -> set[tuple[str, str]]:
    return {(d.type, d.path) for d in c.classify_leaves(walk_json(json.dumps(body).encode(), "response_body"))}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"card": "4111111111111111"}, {("credit_card", "$.card")}),
        ({"note": "pay with 4111 1111 1111 1111 please"}, {("credit_card", "$.note")}),
        ({"card_number": "4111111111111112"}, set()),  # Luhn fails, even under a card key
        ({"iban": "DE89 3704 0044 0532 0130 00"}, {("iban", "$.iban")}),
        ({"iban": "DE88370400440532013000"}, set()),
        ({"ssn": "536221234"}, {("us_ssn", "$.ssn")}),
        ({"reference": "536221234"}, set()),  # nine digits without an identity key
        ({"routing_number": "021000021"}, {("aba_routing", "$.routing_number")}),
        ({"order_id": "021000021"}, set()),
        ({"bic": "DEUTDEFF"}, {("swift_bic", "$.bic")}),
        ({"status": "ABSTRACT"}, set()),
        ({"phone": "020 7946 0958"}, {("phone_number", "$.phone")}),
        ({"contact": "+44 20 7946 0958"}, {("phone_number", "$.contact")}),
        ({"customer_ref": "0612345678"}, set()),  # looks like a phone, not under a phone key
        ({"phone_verified": "yes", "phone_country": "GB"}, set()),
        ({"dob": "1985-04-12"}, {("date_of_birth", "$.dob")}),
        ({"created_at": "1985-04-12"}, set()),
        ({"id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "version": "1.2.3.4", "ts": 1700000000123}, set()),
        ({"token": JWT_IO}, {("jwt", "$.token")}),  # a JWT is not also a "generic secret"
        ({"token": GH_TOKEN}, {("github_token", "$.token")}),
        ({"client_secret": "Zx8f3kP0qLm9vT2bQ7wE"}, {("generic_secret", "$.client_secret")}),
        ({"client_secret": "changeme"}, set()),
        ({"token_type": "Bearer", "expires_in": "3600"}, set()),
        ({"password": "hunter2"}, {("password", "$.password")}),
        ({"password": "********", "password_policy": "min 8 chars"}, set()),
        ({"first_name": "Zoë", "name": "Widget Pro"}, {("person_name", "$.first_name")}),
        ({"email_address": "jane@example.com"}, {("email", "$.email_address")}),  # not a postal address
        ({"ip_address": "8.8.8.8"}, set()),  # network types are off by default
        (
            {"conn": f"DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey={AZURITE_KEY};EndpointSuffix=x"},
            {("azure_storage_connection_string", "$.conn")},
        ),
        (
            {
                "aws": {
                    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
                    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                }
            },
            {
                ("aws_access_key_id", "$.aws.aws_access_key_id"),
                ("aws_secret_access_key", "$.aws.aws_secret_access_key"),
            },
        ),
        ({"users": [{"nhs_number": "943 476 5919"}]}, {("uk_nhs_number", "$.users[*].nhs_number")}),
    ],
)
def test_classify_examples(classifier: Classifier, body: dict[str, object], expected: set[tuple[str, str]]) -> None:
    assert _found(classifier, body) == expected


def test_enabled_set_turns_on_network_types() -> None:
    c = Classifier(load_datatypes(), enabled={"ip_public", "ip_private"})
    assert _found(c, {"client": "8.8.8.8", "peer": "10.1.2.3", "version": "10.0.0.1", "email": "a@b.com"}) == {
        ("ip_public", "$.client"),
        ("ip_private", "$.peer"),
    }
    with pytest.raises(DatatypesError, match="unknown data type ids"):
        Classifier(load_datatypes(), enabled={"nope"})


def _exchange(**kw: object) -> Exchange:
    base: dict[str, object] = {
        "request_id": "r",
        "method": "POST",
        "path": "/",
        "query_string": "",
        "request_headers": CIMultiDict(),
        "peer_ip": "203.0.113.9",
    }
    base.update(kw)
    return Exchange(**base)  # type: ignore[arg-type]


def test_classify_exchange_locations_status_and_headers(classifier: Classifier) -> None:
    resp = json.dumps({"customers": [{"email": f"u{i}@example.com"} for i in range(100)]}).encode()
    ex = _exchange(
        path="/users/jane@example.com",
        query_string="card=4111111111111111&page=2",
        request_headers=CIMultiDict(
            {
                "Authorization": f"Bearer {JWT_IO}",
                "X-User-Email": "jane@example.com",
                "Content-Type": "application/xml",
                "Cookie": "JSESSIONID=8f3a9c1d2e4b5a6978f0e1d2c3b4a596; theme=dark",
            }
        ),
        request_body=b"<req><ssn>536-22-1234</ssn></req>",
        request_body_size=33,
        status=200,
        response_headers=CIMultiDict({"Content-Type": "application/json"}),
        response_body=resp,
        response_body_size=len(resp),
    )
    result = classifier.classify_exchange(ex)
    got = {(d.type, d.location, d.path, d.status_class, d.count) for d in result.data_types}
    assert got == {
        ("email", "path", "path[1]", "", 1),
        ("credit_card", "query", "card", "", 1),
        ("http_authorization", "header", "authorization", "", 1),
        ("jwt", "header", "authorization", "", 1),
        ("session_token", "header", "cookie.JSESSIONID", "", 1),
        ("us_ssn", "request_body", "/req/ssn", "", 1),
        ("email", "response_body", "$.customers[*].email", "2xx", 32),  # sampled
    }
    # The e-mail in X-User-Email is not reported: headers are read for credentials only.
    assert result.sampled and not result.truncated


def test_truncated_response_prefix_still_classified(classifier: Classifier) -> None:
    full = json.dumps({"owner": {"email": "jane@example.com", "iban": "DE89370400440532013000"},
                       "items": ["x" * 100] * 1000}).encode()  # fmt: skip
    ex = _exchange(
        status=404,
        response_headers=CIMultiDict({"Content-Type": "application/json"}),
        response_body=full[:2048],
        response_body_size=len(full),
    )
    result = classifier.classify_exchange(ex)
    assert {(d.type, d.path, d.status_class) for d in result.data_types} == {
        ("email", "$.owner.email", "4xx"),
        ("iban", "$.owner.iban", "4xx"),
    }
    assert result.truncated


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/x-www-form-urlencoded", b"cc=4111111111111111&email=a%40example.com",
         {("credit_card", "cc"), ("email", "email")}),
        ("multipart/form-data; boundary=b0", b'--b0\r\nContent-Disposition: form-data; name="ssn"\r\n\r\n'
         b"536-22-1234\r\n--b0--\r\n", {("us_ssn", "ssn")}),
        ("text/plain", b"contact jane@example.com or +44 20 7946 0958", {("email", ""), ("phone_number", "")}),
    ],
)  # fmt: skip
def test_request_body_kinds(
    classifier: Classifier, content_type: str, body: bytes, expected: set[tuple[str, str]]
) -> None:
    ex = _exchange(request_headers=CIMultiDict({"Content-Type": content_type}), request_body=body,
                   request_body_size=len(body))  # fmt: skip
    assert {(d.type, d.path) for d in classifier.classify_exchange(ex).data_types} == expected


@pytest.mark.parametrize(
    "body",
    [b"[" * 10_000, b'{"a": "\xff\xfe"}', b'{"a": ' + b"9" * 100_000 + b"}", b"\x00" * 1000, b'{"a": "\\u0000"}'],
)
def test_hostile_bodies_never_raise(classifier: Classifier, body: bytes) -> None:
    ex = _exchange(
        request_headers=CIMultiDict({"Content-Type": "application/json"}),
        request_body=body,
        request_body_size=len(body),
        status=200,
        response_body=body,
        response_body_size=len(body),
    )
    classifier.classify_exchange(ex)


def test_nul_inside_values_does_not_blur_leaves(classifier: Classifier) -> None:
    assert _found(classifier, {"a": "x\x00536-22-1234", "b": "4111111111111111\x00"}) == {
        ("us_ssn", "$.a"),
        ("credit_card", "$.b"),
    }


# --------------------------------------------------------------------------------------------------
# Back-ends: Hyperscan and the pure-re fallback give identical results


@pytest.fixture(scope="module")
def corpus() -> list:  # type: ignore[type-arg]
    return generate(400)


@needs_hyperscan
def test_backends_identical_on_corpus(corpus: list) -> None:  # type: ignore[type-arg]
    specs = load_datatypes()
    all_ids = {s.id for s in specs}
    hs = Classifier(specs, enabled=all_ids, backend="hyperscan")
    rx = Classifier(specs, enabled=all_ids, backend="re")
    for doc in corpus:
        leaves = list(walk_json(doc.encode(), "response_body"))
        assert hs.classify_leaves(leaves) == rx.classify_leaves(leaves)


def test_fallback_when_hyperscan_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classify_mod, "_hyperscan", None)
    c = Classifier(load_datatypes())
    assert c.backend == "re"
    assert _found(c, {"card": "4111111111111111", "email": "a@example.com"}) == {
        ("credit_card", "$.card"),
        ("email", "$.email"),
    }


# --------------------------------------------------------------------------------------------------
# Quality goals on the labelled corpus


def test_quality_goals(classifier: Classifier, corpus: list) -> None:  # type: ignore[type-arg]
    scores = evaluate(classifier, corpus)
    table = markdown_table(scores)
    for type_id, score in scores.items():
        goal = 0.99 if type_id in CHECKSUM_TYPES else 0.95
        assert score.precision >= goal, f"{type_id} precision\n{table}"
        assert score.recall >= goal, f"{type_id} recall\n{table}"
    assert len(scores) >= 30, table


# --------------------------------------------------------------------------------------------------
# Privacy: no value ever shows in a result


def test_no_raw_value_in_results(classifier: Classifier, corpus: list) -> None:  # type: ignore[type-arg]
    planted: list[str] = []
    results = []
    for doc in corpus[:120]:
        for section in doc.body.values():
            items = section if isinstance(section, list) else [section]
            for item in items:
                if isinstance(item, dict):
                    planted.extend(str(x) for x in item.values() if isinstance(x, str) and len(x) >= 6)
        body = doc.encode()
        query = "&".join(f"q{i}={val}" for i, val in enumerate(planted[-3:]))
        ex = _exchange(
            path="/x/" + planted[-1][:40].replace("/", "_"),
            query_string=query,
            request_headers=CIMultiDict({"Content-Type": "application/json", "Authorization": f"Bearer {planted[-2]}"}),
            request_body=body,
            request_body_size=len(body),
            status=200,
            response_headers=CIMultiDict({"Content-Type": "application/json"}),
            response_body=body[: len(body) // 2],
            response_body_size=len(body),
        )
        results.append(classifier.classify_exchange(ex))
    text = repr(results)
    assert len(set(planted)) > 300
    leaked = [p for p in set(planted) if p in text]
    assert not leaked, f"{len(leaked)} values leaked"


def test_remembered_pairs_give_the_same_answer_and_keep_location_rules() -> None:
    """The (key, value) memo: a second pass answers from memory with the same counts, and the
    location rules still apply per leaf (a card number in a header is not reported; in a body it
    is), and nothing of the value itself is kept."""
    from sensor.walk import Leaf

    fresh = Classifier.from_policies(None)
    card = "4111 1111 1111 1111"
    leaves = [
        Leaf("response_body", "$.card", "card", card),
        Leaf("header", "x-card", "card", card),
        Leaf("response_body", "$.email", "email", "alice@example.com"),
        Leaf("response_body", "$.name", "name", "Widget"),
    ]
    first = fresh.classify_leaves(leaves, status_class="2xx")
    assert fresh._leaf_memo  # remembered ...
    assert all(not isinstance(k, str) for k in fresh._leaf_memo)  # ... by hash, never by value
    second = fresh.classify_leaves(list(reversed(leaves)), status_class="2xx")
    def as_set(found: list) -> set:  # type: ignore[type-arg]
        return {(d.type, d.location, d.path, d.count) for d in found}

    assert as_set(first) == as_set(second)
    found = {(d.type, d.location, d.path) for d in first}
    assert ("credit_card", "response_body", "$.card") in found
    assert not any(loc == "header" for _, loc, _ in found)
    assert ("email", "response_body", "$.email") in found
    # a value seen clean stays clean; a new value under the same key is classified afresh
    third = fresh.classify_leaves([Leaf("response_body", "$.name", "name", "5555 5555 5555 4444")])
    assert {d.type for d in third} == {"credit_card"}
