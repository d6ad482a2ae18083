"""Table-driven tests for sensor.evidence: authentication evidence, client address, scheme."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from multidict import CIMultiDict, MultiDict

from sensor.config import SensorConfig
from sensor.evidence import (
    EvidenceConfig,
    PrincipalHasher,
    authentication,
    client_info,
    client_scheme,
    is_trusted_peer,
)
from sensor.observation import AuthEvidence

NOW = 1_700_000_000.0
SUB = "alice-subject-7f3e"  # distinctive: must never appear in a result


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(obj: Any) -> str:
    return b64url(json.dumps(obj).encode())


def jwt(header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None, sig: str = "c2ln") -> str:
    header = {"alg": "HS256", "typ": "JWT"} if header is None else header
    claims = {"sub": SUB, "iss": "https://idp.example", "exp": NOW + 3600} if claims is None else claims
    return f"{seg(header)}.{seg(claims)}.{sig}"


@pytest.fixture(scope="module")
def hasher() -> PrincipalHasher:
    return PrincipalHasher(b"test-secret-0123456789")


@pytest.fixture(scope="module")
def cfg() -> EvidenceConfig:
    return EvidenceConfig.from_sensor_config(
        SensorConfig(trusted_proxies=["10.0.0.0/8", "fd00:1::/64"], internal_cidrs=["198.51.100.0/24"])
    )


def auth(
    cfg: EvidenceConfig,
    hasher: PrincipalHasher,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    query: dict[str, str] | None = None,
    **kw: Any,
) -> AuthEvidence:
    return authentication(CIMultiDict(headers or {}), MultiDict(query or {}), cfg, hasher, now=NOW, **kw)


# --------------------------------------------------------------------------------------------------
# hasher


def test_hasher_is_keyed_prefixed_and_truncated() -> None:
    h1, h2 = PrincipalHasher(b"k1"), PrincipalHasher(b"k2")
    a = h1.hash("jwt", "bob")
    assert a.startswith("jwt:") and len(a) == 4 + 24
    assert a == h1.hash("jwt", "bob")
    assert a != h2.hash("jwt", "bob")
    assert h1.hash("api_key", "bob") != h1.hash("session", "bob")
    assert h1.hash("x", "\udc80 lone surrogate")  # never raises
    assert "k1" not in repr(h1)
    with pytest.raises(ValueError):
        PrincipalHasher(b"")


# --------------------------------------------------------------------------------------------------
# JWTs

RS_KID = {"alg": "RS256", "kid": "key-1", "typ": "JWT"}
FULL_CLAIMS = {
    "sub": SUB,
    "iss": "https://login.example/tenant",
    "aud": ["api://one", "api://two"],
    "exp": int(NOW) + 600,
    "iat": int(NOW) - 60,
    "scp": "read write",
}


@pytest.mark.parametrize(
    ("token", "scheme", "expect"),
    [
        pytest.param(jwt(), "jwt", {"alg": "HS256", "iss": "https://idp.example", "expired": False}, id="hs256"),
        pytest.param(
            jwt(RS_KID, FULL_CLAIMS),
            "jwt",
            {
                "alg": "RS256",
                "kid": "key-1",
                "aud": "api://one,api://two",
                "scope": "read write",
                "exp": int(NOW) + 600,
                "iat": int(NOW) - 60,
                "unsigned": False,
                "malformed": False,
            },
            id="rs256-kid-aud-list-scp",
        ),
        pytest.param(
            jwt({"alg": "ES256"}, {"sub": SUB, "aud": "single", "scope": ["a", "b"]}),
            "jwt",
            {"alg": "ES256", "aud": "single", "scope": "a b", "exp": None},
            id="es256-aud-string-scope-list",
        ),
        pytest.param(jwt({"alg": "none"}, sig=""), "jwt", {"alg": "none", "unsigned": True}, id="alg-none"),
        pytest.param(jwt({"alg": "NoNe"}, sig="x"), "jwt", {"unsigned": True}, id="alg-none-any-case"),
        pytest.param(jwt(sig=""), "jwt", {"alg": "HS256", "unsigned": True}, id="empty-signature"),
        pytest.param(
            jwt(claims={"sub": SUB, "exp": NOW - 1}), "jwt", {"expired": True, "exp": int(NOW) - 1}, id="expired"
        ),
        pytest.param(jwt(claims={"sub": SUB, "exp": 1.7e9 + 0.5}), "jwt", {"exp": 1_700_000_000}, id="float-exp"),
        pytest.param(
            f"{seg({'alg': 'HS256'})}.{seg({'sub': SUB})}",
            "jwt",
            {"malformed": True, "unsigned": True},
            id="two-segments",
        ),
        pytest.param("eyJ!!!.@@@.###", "bearer", {"malformed": True, "alg": None}, id="garbage-jwt-shape"),
        pytest.param(
            f"{seg({'alg': 'HS256'})}.not-base64!.sig", "jwt", {"alg": "HS256", "malformed": True}, id="bad-payload"
        ),
        pytest.param(
            f"{seg({'alg': 'HS256'})}.{b64url(b'not json')}.sig", "jwt", {"malformed": True}, id="payload-not-json"
        ),
        pytest.param(
            f"{seg({'alg': 'HS256'})}.{b64url(b'[1,2]')}.sig", "jwt", {"malformed": True}, id="payload-not-object"
        ),
        pytest.param(
            f"{seg({'alg': 'HS256'})}.{b64url(b'[' * 5000 + b']' * 5000)}.sig",
            "jwt",
            {"malformed": True},
            id="deeply-nested",
        ),
        pytest.param(
            seg({"alg": "HS256"}) + "." + b64url(b'{"exp": ' + b"9" * 5000 + b"}") + ".sig",
            "jwt",
            {"malformed": True, "exp": None},
            id="huge-number",
        ),
        pytest.param(
            jwt(claims={"sub": SUB, "exp": 10**30, "iat": True}), "jwt", {"exp": None, "iat": None}, id="absurd-exp"
        ),
        pytest.param(jwt(claims={"sub": SUB, "pad": "x" * 65536}), "jwt", {"malformed": True}, id="huge-64k"),
        pytest.param(f"{seg({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.a.b.c.d", "jwt", {"alg": "RSA-OAEP"}, id="jwe"),
        pytest.param(jwt({"typ": "JWT"}), "jwt", {"alg": None, "malformed": True}, id="no-alg"),
    ],
)
def test_jwt_table(
    cfg: EvidenceConfig, hasher: PrincipalHasher, token: str, scheme: str, expect: dict[str, Any]
) -> None:
    ev = auth(cfg, hasher, {"Authorization": f"Bearer {token}"})
    assert ev.schemes == (scheme,)
    assert ev.has_credential
    assert ev.jwt is not None
    for name, value in expect.items():
        assert getattr(ev.jwt, name) == value, name
    assert ev.principal is not None  # sub, else the token itself
    assert SUB not in repr(ev)
    assert token not in repr(ev)


def test_jwt_sub_is_hashed_principal(cfg: EvidenceConfig, hasher: PrincipalHasher) -> None:
    ev = auth(cfg, hasher, {"Authorization": "Bearer " + jwt()})
    assert ev.jwt is not None
    assert ev.jwt.sub_hash == hasher.hash("jwt", SUB)
    assert ev.principal == ev.jwt.sub_hash
    assert SUB not in repr(ev)


def test_jwt_without_sub_uses_client_id(cfg: EvidenceConfig, hasher: PrincipalHasher) -> None:
    ev = auth(cfg, hasher, {"Authorization": "Bearer " + jwt(claims={"azp": "svc-42"})})
    assert ev.jwt is not None and ev.jwt.sub_hash is None
    assert ev.principal == hasher.hash("jwt", "svc-42")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("opaque-token-abcdef", id="opaque"),
        pytest.param("a.b.c", id="dotted-not-json"),
        pytest.param(b64url(b'{"cursor": 1}'), id="base64-json-no-dots"),
        pytest.param("x" * 65536, id="huge-opaque"),
        pytest.param("\udcff\u0000weird", id="weird-chars"),
    ],
)
def test_opaque_bearer(cfg: EvidenceConfig, hasher: PrincipalHasher, token: str) -> None:
    ev = auth(cfg, hasher, {"Authorization": f"Bearer {token}"})
    assert ev.schemes == ("bearer",)
    assert ev.jwt is None
    assert ev.principal == hasher.hash("bearer", token)
    assert token not in repr(ev)


@pytest.mark.parametrize(
    ("headers", "query", "schemes", "key_in_query", "principal"),
    [
        pytest.param({}, {}, ("none",), False, None, id="nothing"),
        pytest.param({"Authorization": "Bearer "}, {}, ("none",), False, None, id="empty-bearer"),
        pytest.param({"X-API-Key": "k-123"}, {}, ("api_key",), False, ("api_key", "k-123"), id="api-key-header"),
        pytest.param({"apikey": "k-123"}, {}, ("api_key",), False, ("api_key", "k-123"), id="api-key-header-alt"),
        pytest.param({}, {"api_key": "k-123"}, ("api_key",), True, ("api_key", "k-123"), id="api-key-query"),
        pytest.param({}, {"API_KEY": "k-123"}, ("api_key",), True, ("api_key", "k-123"), id="api-key-query-case"),
        pytest.param({}, {"api_key": ""}, ("none",), False, None, id="empty-key-ignored"),
        pytest.param(
            {"Ocp-Apim-Subscription-Key": "sub-1"},
            {},
            ("subscription_key",),
            False,
            ("subscription_key", "sub-1"),
            id="subscription-header",
        ),
        pytest.param(
            {},
            {"subscription-key": "sub-1"},
            ("subscription_key",),
            True,
            ("subscription_key", "sub-1"),
            id="subscription-query",
        ),
        pytest.param(
            {"Ocp-Apim-Subscription-Key": "sub-1", "Authorization": "Bearer " + jwt()},
            {},
            ("subscription_key", "jwt"),
            False,
            ("jwt", SUB),
            id="subscription-and-jwt-sub-wins",
        ),
        pytest.param(
            {"Ocp-Apim-Subscription-Key": "sub-1", "X-API-Key": "k"},
            {},
            ("subscription_key", "api_key"),
            False,
            ("subscription_key", "sub-1"),
            id="subscription-beats-api-key",
        ),
        pytest.param({}, {"access_token": jwt()}, ("jwt",), True, ("jwt", SUB), id="jwt-in-query"),
        pytest.param({}, {"token": "opaque-1"}, ("bearer",), True, ("bearer", "opaque-1"), id="bearer-in-query"),
        pytest.param(
            {"Cookie": "theme=dark; sessionid=s3cr3t; other=1"},
            {},
            ("session",),
            False,
            ("session", "s3cr3t"),
            id="session-cookie",
        ),
        pytest.param({"Cookie": 'JSESSIONID="abc"'}, {}, ("session",), False, ("session", "abc"), id="session-quoted"),
        pytest.param({"Cookie": "theme=dark; lang=en"}, {}, ("none",), False, None, id="cookies-not-session"),
        pytest.param({"Cookie": ";;;=;=x;sid"}, {}, ("none",), False, None, id="cookie-garbage"),
        pytest.param(
            {"Cookie": "session=s1", "X-API-Key": "k"},
            {},
            ("api_key", "session"),
            False,
            ("api_key", "k"),
            id="api-key-beats-session",
        ),
        pytest.param(
            {"Authorization": 'Digest username="dora", realm="r", nonce="n"'},
            {},
            ("digest",),
            False,
            ("digest", "dora"),
            id="digest",
        ),
        pytest.param({"Authorization": "NTLM TlRMTVNTUAAB"}, {}, ("other",), False, None, id="ntlm-other"),
        pytest.param({"Authorization": "garbage"}, {}, ("other",), False, None, id="no-scheme-other"),
        pytest.param({"Authorization": jwt()}, {}, ("jwt",), False, ("jwt", SUB), id="bare-jwt"),
    ],
)
def test_credentials_table(
    cfg: EvidenceConfig,
    hasher: PrincipalHasher,
    *,
    headers: dict[str, str],
    query: dict[str, str],
    schemes: tuple[str, ...],
    key_in_query: bool,
    principal: tuple[str, str] | None,
) -> None:
    ev = auth(cfg, hasher, headers, query)
    assert ev.schemes == schemes
    assert ev.key_in_query is key_in_query
    assert ev.principal == (hasher.hash(*principal) if principal else None)
    assert ev.has_credential is (schemes != ("none",))
    for secret in ("k-123", "sub-1", "s3cr3t", "opaque-1", SUB, "dora"):
        assert secret not in repr(ev)


@pytest.mark.parametrize(
    ("user", "password", "principal"),
    [
        pytest.param("bob", "hunter2-pass", "bob", id="plain"),
        pytest.param("bob", "pa:ss:word", "bob", id="colon-in-password"),
        pytest.param("", "only-a-password", None, id="no-user"),
        pytest.param("jos\u00e9", "p\u00e4ss", "jos\u00e9", id="utf8"),
    ],
)
def test_basic(cfg: EvidenceConfig, hasher: PrincipalHasher, user: str, password: str, principal: str | None) -> None:
    value = base64.b64encode(f"{user}:{password}".encode()).decode()
    ev = auth(cfg, hasher, {"Authorization": f"Basic {value}"})
    assert ev.schemes == ("basic",)
    assert ev.principal == (hasher.hash("basic", principal) if principal else None)
    assert password not in repr(ev)
    assert value not in repr(ev)


@pytest.mark.parametrize("value", ["!!!not-base64", "", "x" * 100_000, base64.b64encode(b"\xff\xfe").decode()])
def test_basic_garbage(cfg: EvidenceConfig, hasher: PrincipalHasher, value: str) -> None:
    ev = auth(cfg, hasher, {"Authorization": f"Basic {value}"})
    assert ev.schemes == ("basic",)


MTLS_CASES = [
    (
        "X-Forwarded-Client-Cert",
        'By=spiffe://a;Hash=abc123;Subject="CN=client-1,O=Org";URI=spiffe://c',
        "CN=client-1,O=Org",
    ),
    ("X-Forwarded-Client-Cert", "By=spiffe://a;Hash=abc123;URI=spiffe://c", "abc123"),
    ("X-ARR-ClientCert", "MIIBszCCAVmgAwIBAgI", "MIIBszCCAVmgAwIBAgI"),
    ("X-Client-Cert", "CN=client-2", "CN=client-2"),
]


@pytest.mark.parametrize(("header", "value", "identity"), MTLS_CASES)
@pytest.mark.parametrize("trusted", [True, False])
def test_mtls_headers_only_from_trusted_peer(
    cfg: EvidenceConfig, hasher: PrincipalHasher, *, header: str, value: str, identity: str, trusted: bool
) -> None:
    ev = auth(cfg, hasher, {header: value}, peer_trusted=trusted)
    if trusted:
        assert ev.schemes == ("mtls",)
        assert ev.principal == hasher.hash("mtls", identity)
    else:
        assert ev.schemes == ("none",)
        assert ev.principal is None


def test_mtls_from_own_listener(cfg: EvidenceConfig, hasher: PrincipalHasher) -> None:
    ev = auth(cfg, hasher, {"X-API-Key": "k"}, peer_cert_subject="CN=svc")
    assert ev.schemes == ("api_key", "mtls")
    assert ev.principal == hasher.hash("api_key", "k")  # the key is the stronger principal
    ev = auth(cfg, hasher, {}, peer_cert_subject="CN=svc")
    assert ev.principal == hasher.hash("mtls", "CN=svc")


def test_schemes_order_is_deterministic(cfg: EvidenceConfig, hasher: PrincipalHasher) -> None:
    headers = [
        ("Cookie", "sid=1"),
        ("Authorization", "Bearer " + jwt()),
        ("X-API-Key", "k"),
        ("Ocp-Apim-Subscription-Key", "s"),
    ]
    a = auth(cfg, hasher, headers, peer_cert_subject="CN=x")
    b = auth(cfg, hasher, list(reversed(headers)), peer_cert_subject="CN=x")
    assert a == b
    assert a.schemes == ("subscription_key", "api_key", "jwt", "session", "mtls")
    assert a.principal == hasher.hash("jwt", SUB)


def test_custom_config_names(hasher: PrincipalHasher) -> None:
    cfg = EvidenceConfig.from_sensor_config(
        SensorConfig(api_key_headers=["X-Custom-Key"], api_key_query=["Code"], session_cookies=["AppSession"])
    )
    assert auth(cfg, hasher, {"x-custom-key": "1"}).schemes == ("api_key",)
    assert auth(cfg, hasher, {"X-API-Key": "1"}).schemes == ("none",)
    assert auth(cfg, hasher, {}, {"code": "1"}).key_in_query
    assert auth(cfg, hasher, {"Cookie": "appsession=v"}).schemes == ("session",)


def test_hostile_inputs_never_raise(cfg: EvidenceConfig, hasher: PrincipalHasher) -> None:
    hostile = [
        "Bearer " + "eyJ" + "A" * 65536 + ".b.c",
        "Bearer " + "eyJ" + "." * 5000,
        "Bearer eyJ.." + "=" * 100,
        "Bearer " + seg({"alg": {"nested": [1, 2]}, "kid": 5}) + ".e30.",
        "Bearer " + seg({"alg": "HS256"}) + "." + seg({"sub": {"x": 1}, "aud": [1, None], "scp": 3}) + ".s",
        "Basic " + "A" * 5000,
        "\x00\x01 \x02",
        "Bearer \udcff.\udcfe.\udcfd",
    ]
    for value in hostile:
        ev = auth(cfg, hasher, {"Authorization": value})
        assert ev.schemes
    many = MultiDict([(f"p{i}", "v") for i in range(10_000)] + [("api_key", "late")])
    ev = authentication(CIMultiDict(), many, cfg, hasher, now=NOW)
    assert ev.schemes == ("none",)  # beyond the query item cap: not read


# --------------------------------------------------------------------------------------------------
# client address


@pytest.mark.parametrize(
    ("peer", "xff", "hint", "ip", "external", "via"),
    [
        pytest.param("203.0.113.7", None, None, "203.0.113.7", True, False, id="direct-external"),
        pytest.param("192.168.1.5", None, None, "192.168.1.5", False, False, id="direct-private"),
        pytest.param("203.0.113.7", "10.1.1.1", None, "203.0.113.7", True, False, id="xff-from-untrusted-ignored"),
        pytest.param("8.8.8.8", "1.1.1.1, 10.0.0.2", None, "8.8.8.8", True, False, id="spoof-chain-ignored"),
        pytest.param("10.0.0.1", "203.0.113.9", None, "203.0.113.9", True, True, id="one-trusted-hop"),
        pytest.param(
            "10.0.0.1", "6.6.6.6, 203.0.113.9, 10.2.2.2, 10.3.3.3", None, "203.0.113.9", True, True, id="multi-hop"
        ),
        pytest.param("10.0.0.1", "10.9.9.9, 10.2.2.2", None, "10.9.9.9", False, True, id="all-hops-trusted"),
        pytest.param("10.0.0.1", "203.0.113.9, garbage, 10.2.2.2", None, "10.2.2.2", False, True, id="malformed-stop"),
        pytest.param("10.0.0.1", "garbage", None, "10.0.0.1", False, False, id="malformed-first"),
        pytest.param("10.0.0.1", "", None, "10.0.0.1", False, False, id="empty-xff"),
        pytest.param("10.0.0.1", "203.0.113.9:51234", None, "203.0.113.9", True, True, id="xff-with-port"),
        pytest.param("10.0.0.1", "[2001:db8::5]:443", None, "2001:db8::5", True, True, id="xff-v6-port"),
        pytest.param("10.0.0.1", "203.0.113.9,, ", None, "203.0.113.9", True, True, id="empty-entries"),
        pytest.param("10.0.0.1", ",".join(["10.0.0.3"] * 100), None, "10.0.0.3", False, True, id="long-chain"),
        pytest.param("::ffff:10.0.0.1", "203.0.113.9", None, "203.0.113.9", True, True, id="mapped-trusted-peer"),
        pytest.param("fd00:1::1", "2001:db8::1", None, "2001:db8::1", True, True, id="v6-trusted-peer"),
        pytest.param("203.0.113.7", "1.2.3.4", "198.18.0.1", "198.18.0.1", True, False, id="hint-wins"),
        pytest.param("10.0.0.1", "203.0.113.9", "172.16.0.4", "172.16.0.4", False, False, id="hint-wins-over-xff"),
        pytest.param("::ffff:203.0.113.7", None, None, "203.0.113.7", True, False, id="mapped-v6"),
        pytest.param("::ffff:192.168.0.1", None, None, "192.168.0.1", False, False, id="mapped-private"),
        pytest.param("100.64.0.1", None, None, "100.64.0.1", False, False, id="cgnat"),
        pytest.param("100.128.0.1", None, None, "100.128.0.1", True, False, id="just-outside-cgnat"),
        pytest.param("169.254.169.254", None, None, "169.254.169.254", False, False, id="link-local-v4"),
        pytest.param("fe80::1%eth0", None, None, "fe80::1", False, False, id="link-local-v6-zone"),
        pytest.param("fd12:3456::1", None, None, "fd12:3456::1", False, False, id="ula"),
        pytest.param("::1", None, None, "::1", False, False, id="loopback-v6"),
        pytest.param("127.0.0.1", None, None, "127.0.0.1", False, False, id="loopback-v4"),
        pytest.param("0.0.0.0", None, None, "0.0.0.0", False, False, id="unspecified"),
        pytest.param("2001:4860:4860::8888", None, None, "2001:4860:4860::8888", True, False, id="public-v6"),
        pytest.param("198.51.100.20", None, None, "198.51.100.20", False, False, id="configured-internal"),
        pytest.param("not-an-ip", None, None, "not-an-ip", False, False, id="unparsable-peer"),
        pytest.param("", None, None, "", False, False, id="empty-peer"),
        pytest.param("[2001:db8::9]", None, None, "2001:db8::9", True, False, id="bracketed-v6"),
    ],
)
def test_client_info(
    cfg: EvidenceConfig, *, peer: str, xff: str | None, hint: str | None, ip: str, external: bool, via: bool
) -> None:
    headers = CIMultiDict({"X-Forwarded-For": xff} if xff is not None else {})
    info = client_info(peer, headers, cfg, client_ip_hint=hint)
    assert (info.ip, info.external, info.via_trusted_hop) == (ip, external, via)


def test_multiple_xff_headers_are_joined(cfg: EvidenceConfig) -> None:
    headers = CIMultiDict([("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-For", "10.0.0.9")])
    assert client_info("10.0.0.1", headers, cfg).ip == "203.0.113.1"


def test_is_trusted_peer(cfg: EvidenceConfig) -> None:
    assert is_trusted_peer("10.1.2.3", cfg)
    assert is_trusted_peer("::ffff:10.1.2.3", cfg)
    assert not is_trusted_peer("203.0.113.1", cfg)
    assert not is_trusted_peer("junk", cfg)
    assert not is_trusted_peer("10.1.2.3", EvidenceConfig())  # nothing trusted by default


def test_ip_cache_is_bounded() -> None:
    cfg = EvidenceConfig(ip_cache_size=100)
    for i in range(1000):
        client_info(f"203.0.{i // 256}.{i % 256}", CIMultiDict(), cfg)
    assert cfg._ip_lookup.cache_info().currsize <= 100  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("listener", "xfp", "trusted", "expected"),
    [
        ("http", "https", True, "https"),
        ("http", "https", False, "http"),
        ("https", "http", True, "http"),
        ("http", "HTTPS, http", True, "https"),
        ("http", "ftp", True, "http"),
        ("http", "", True, "http"),
        ("HTTPS", None, True, "https"),
        ("http", " wss ", True, "http"),
    ],
)
def test_client_scheme(listener: str, xfp: str | None, trusted: bool, expected: str) -> None:
    headers = CIMultiDict({"X-Forwarded-Proto": xfp} if xfp is not None else {})
    assert client_scheme(listener, headers, trusted) == expected


# --------------------------------------------------------------------------------------------------
# token memo


def test_token_memo_tracks_expiry_and_is_per_key(cfg: EvidenceConfig) -> None:
    hasher = PrincipalHasher(b"memo-key", token_cache_size=8)
    token = jwt(claims={"sub": SUB, "exp": int(NOW) + 10})
    headers = CIMultiDict({"Authorization": f"Bearer {token}"})
    before = authentication(headers, MultiDict(), cfg, hasher, now=NOW)
    after = authentication(headers, MultiDict(), cfg, hasher, now=NOW + 11)
    again = authentication(headers, MultiDict(), cfg, hasher, now=NOW)
    assert before.jwt is not None and after.jwt is not None and again.jwt is not None
    assert (before.jwt.expired, after.jwt.expired, again.jwt.expired) == (False, True, False)
    assert before.principal == after.principal == hasher.hash("jwt", SUB)
    other = PrincipalHasher(b"another-key")
    assert authentication(headers, MultiDict(), cfg, other, now=NOW).principal == other.hash("jwt", SUB)


def test_token_memo_is_bounded(cfg: EvidenceConfig) -> None:
    hasher = PrincipalHasher(b"memo-key", token_cache_size=16)
    for i in range(500):
        ev = auth(cfg, hasher, {"Authorization": f"Bearer opaque-{i}"})
        assert ev.principal == hasher.hash("bearer", f"opaque-{i}")
    assert len(hasher._tokens) <= 16
