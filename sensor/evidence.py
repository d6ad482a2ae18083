"""Authentication evidence and the client's address, read from one request's headers.

Everything here is a pure function of (headers, query, a frozen ``EvidenceConfig``): no IO, no clock
(``now`` is passed in), nothing that can raise on hostile input. It runs on every request in the
proxy's hot path, so configuration is parsed once into ``EvidenceConfig``, header lookups are
targeted ``get`` calls on the case-insensitive header mapping instead of scans, string work uses
``str`` methods rather than regexes, and IP classification is memoised in a bounded LRU.

Secrets never leave this module: tokens, keys, cookies, user names and JWT ``sub`` claims are
reduced to keyed HMAC-SHA256 hashes (``PrincipalHasher``) before they are put in an
``AuthEvidence``. A Basic password is decoded only into a local and dropped.

Headers must be a case-insensitive multimapping (aiohttp's ``CIMultiDictProxy`` or a
``CIMultiDict``), as every capture path produces. The query mapping may be case-sensitive: its
names are lower-cased here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

import msgspec
from cachetools import LRUCache
from multidict import MultiMapping

from sensor.config import SensorConfig
from sensor.observation import AuthEvidence, ClientInfo, JwtInfo

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "EvidenceConfig",
    "PrincipalHasher",
    "authentication",
    "client_info",
    "client_scheme",
    "is_trusted_peer",
]

# --------------------------------------------------------------------------------------------------
# Principal hashing

# (scheme, JwtInfo or None, hashed principal, principal rank) of one bearer token.
_TokenEvidence = tuple[str, JwtInfo | None, str, int]


class PrincipalHasher:
    """Keyed hashes of principals: ``kind:`` + the first 24 hex digits of HMAC-SHA256.

    The kind is part of the MAC input, so the same string used as an API key and as a session id
    gives two unrelated hashes. 96 bits keep collisions out of reach for any realistic population
    while keeping events small. The key must stay secret and stable across restarts (and shared by
    replicas) for hashes to join up at the collector.
    """

    __slots__ = ("_base", "_tokens")

    def __init__(self, secret: bytes, *, token_cache_size: int = 4096) -> None:
        if not secret:
            raise ValueError("principal secret must not be empty")
        # Keying the HMAC once and copying its state per call saves the key schedule on every hash.
        self._base = hmac.new(secret, digestmod=hashlib.sha256)
        # Memo of what a bearer token yields (scheme, JwtInfo, hashed principal): a client reuses
        # one token for its whole lifetime, and decoding + hashing is most of the cost of
        # ``authentication``. It lives here because the hashes depend on this key. Keyed by
        # Python's per-process randomised hash of the token, not the token itself, so live tokens
        # are not retained in memory; a collision (64 bits, unknown seed) is not a practical risk.
        self._tokens: LRUCache[int, _TokenEvidence] = LRUCache(maxsize=max(1, token_cache_size))

    def hash(self, kind: str, value: str) -> str:
        mac = self._base.copy()
        # surrogatepass: header strings may carry lone surrogates (surrogateescape'd bytes); every
        # str encodes under it, so hashing never raises.
        mac.update(kind.encode("utf-8", "surrogatepass") + b"\x00" + value.encode("utf-8", "surrogatepass"))
        return kind + ":" + mac.hexdigest()[:24]

    def __repr__(self) -> str:  # never show the key
        return "PrincipalHasher(<secret>)"


# --------------------------------------------------------------------------------------------------
# Configuration

# Addresses that are never "the internet": RFC 1918, loopback, link-local, CGNAT (RFC 6598),
# "this network" / unspecified, IPv6 ULA. Deliberately not ``ipaddress.is_private``: that also
# covers the documentation and benchmarking ranges, which test traffic and demos use as stand-ins
# for public clients.
_NON_EXTERNAL: Final[tuple[IPNetwork, ...]] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "0.0.0.0/8",
        "::1/128",
        "::/128",
        "fe80::/10",
        "fc00::/7",
    )
)

SUBSCRIPTION_KEY_HEADER: Final = "Ocp-Apim-Subscription-Key"
SUBSCRIPTION_KEY_QUERY: Final = "subscription-key"
# Query parameters that carry OAuth / OIDC tokens (RFC 6750 section 2.3 and common practice).
TOKEN_QUERY_NAMES: Final = ("access_token", "token", "id_token")
# Client-certificate headers set by proxies that terminated mTLS (Envoy, App Service / APIM, nginx).
# Believed only from a trusted peer: anyone else can simply send them.
MTLS_HEADERS: Final = ("X-Forwarded-Client-Cert", "X-ARR-ClientCert", "X-Client-Cert")

_Q_SUBSCRIPTION: Final = 0
_Q_TOKEN: Final = 1
_Q_API_KEY: Final = 2


class _Addr:
    """The memoised classification of one address string, with the two ``ClientInfo`` answers
    prebuilt so the common path allocates nothing."""

    __slots__ = ("direct", "external", "ip", "trusted", "valid", "via")

    def __init__(self, ip: str, valid: bool, trusted: bool, external: bool) -> None:
        self.ip = ip
        self.valid = valid
        self.trusted = trusted
        self.external = external
        self.direct = ClientInfo(ip=ip, external=external, via_trusted_hop=False)
        self.via = ClientInfo(ip=ip, external=external, via_trusted_hop=True)


def _networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """What evidence extraction needs from the sensor configuration, parsed once.

    Header and query names are lower-cased; cookie names are matched case-insensitively (servers
    differ, and a false "session" match only costs a hash).
    """

    trusted_proxies: tuple[IPNetwork, ...] = ()
    internal_networks: tuple[IPNetwork, ...] = ()
    api_key_headers: tuple[str, ...] = ("x-api-key", "api-key", "apikey")
    api_key_query: frozenset[str] = frozenset({"api_key", "api-key", "apikey", "key"})
    session_cookies: frozenset[str] = frozenset(
        {"session", "sessionid", "jsessionid", "phpsessid", "connect.sid", "sid"}
    )
    ip_cache_size: int = 65536
    # Derived at construction: lower-cased query name -> what it carries, and the IP memo.
    _query_kinds: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)
    _ip_lookup: Callable[[str], _Addr] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        kinds: dict[str, int] = {n.lower(): _Q_API_KEY for n in self.api_key_query}
        # Fixed meanings win over configured API key names.
        for name in TOKEN_QUERY_NAMES:
            kinds[name] = _Q_TOKEN
        kinds[SUBSCRIPTION_KEY_QUERY] = _Q_SUBSCRIPTION
        object.__setattr__(self, "api_key_headers", tuple(h.lower() for h in self.api_key_headers))
        object.__setattr__(self, "api_key_query", frozenset(n.lower() for n in self.api_key_query))
        object.__setattr__(self, "session_cookies", frozenset(n.lower() for n in self.session_cookies))
        object.__setattr__(self, "_query_kinds", kinds)
        # functools' LRU is C code: a hit costs ~0.1 µs where cachetools' (Python) costs ~1.5, and every
        # request looks up its peer and each X-Forwarded-For hop.
        lookup = functools.lru_cache(maxsize=max(1, self.ip_cache_size))(functools.partial(_classify, cfg=self))
        object.__setattr__(self, "_ip_lookup", lookup)

    @classmethod
    def from_sensor_config(cls, cfg: SensorConfig) -> EvidenceConfig:
        return cls(
            trusted_proxies=_networks(cfg.trusted_proxies),
            internal_networks=_networks(cfg.internal_cidrs),
            api_key_headers=tuple(cfg.api_key_headers),
            api_key_query=frozenset(cfg.api_key_query),
            session_cookies=frozenset(cfg.session_cookies),
        )


# --------------------------------------------------------------------------------------------------
# Client address


def _parse_ip(raw: str) -> IPAddress | None:
    """An address from a socket peer, an XFF entry or a gateway hint: tolerates ``[v6]``,
    ``[v6]:port``, ``v4:port`` (App Service puts ports in XFF) and zone ids; maps ``::ffff:a.b.c.d``
    to IPv4 so one client is one address."""
    s = raw.strip()
    if not s or len(s) > 64:
        return None
    if s[0] == "[":
        end = s.find("]")
        if end < 0:
            return None
        s = s[1:end]
    elif s.count(":") == 1:
        s = s.partition(":")[0]
    pct = s.find("%")
    if pct >= 0:
        s = s[:pct]
    try:
        addr: IPAddress = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _classify(raw: str, cfg: EvidenceConfig) -> _Addr:
    """What an address string is (memoised per config: ``cfg._ip_lookup``)."""
    addr = _parse_ip(raw)
    if addr is None:
        # Unparsable: keep the string as given, never trust it, never call it external (we cannot
        # say it came from the internet).
        return _Addr(raw, valid=False, trusted=False, external=False)
    trusted = any(addr in net for net in cfg.trusted_proxies)
    internal = any(addr in net for net in _NON_EXTERNAL) or any(addr in net for net in cfg.internal_networks)
    return _Addr(str(addr), valid=True, trusted=trusted, external=not internal)


def is_trusted_peer(peer_ip: str, cfg: EvidenceConfig) -> bool:
    """Whether the socket peer is one of the configured trusted proxies."""
    return cfg._ip_lookup(peer_ip).trusted


# Hops walked from the right of X-Forwarded-For. Real chains are a handful of proxies; the cap
# bounds the work a long forged header can cause.
_MAX_HOPS: Final = 16


def client_info(
    peer_ip: str,
    headers: MultiMapping[str],
    cfg: EvidenceConfig,
    client_ip_hint: str | None = None,
) -> ClientInfo:
    """Who the client is: the gateway's hint, else the first untrusted hop of X-Forwarded-For when
    the socket peer is a trusted proxy, else the socket peer."""
    if client_ip_hint:
        return cfg._ip_lookup(client_ip_hint).direct
    peer = cfg._ip_lookup(peer_ip)
    if not peer.trusted:
        # Anyone can write X-Forwarded-For; from an untrusted peer it is ignored entirely.
        return peer.direct
    values = headers.getall("X-Forwarded-For", ())
    if not values:
        return peer.direct
    xff = values[0] if len(values) == 1 else ",".join(values)
    # Each trusted proxy appends the address it saw, so the right end is the most trustworthy:
    # walk right to left past our own proxies; the first address they did not vouch for is the
    # client. Anything left of it was written by the client and proves nothing.
    parts = xff.rsplit(",", _MAX_HOPS)
    stop = 1 if len(parts) > _MAX_HOPS else 0  # parts[0] is then the unwalked remainder
    last_good = peer
    for i in range(len(parts) - 1, stop - 1, -1):
        entry = parts[i].strip()
        if not entry:
            continue
        hop = cfg._ip_lookup(entry)
        if not hop.valid:
            break  # garbage (or an obfuscated RFC 7239 name): keep the last hop we could read
        if not hop.trusted:
            return hop.via
        last_good = hop
    return peer.direct if last_good is peer else last_good.via


def client_scheme(listener_scheme: str, headers: MultiMapping[str], peer_trusted: bool) -> str:
    """The scheme the client used: X-Forwarded-Proto from a trusted peer (first value, http or
    https only), else the listener's own."""
    if peer_trusted:
        xfp = headers.get("X-Forwarded-Proto")
        if xfp:
            first = xfp.partition(",")[0].strip().lower()
            if first in ("http", "https"):
                return first
    return listener_scheme.lower()


# --------------------------------------------------------------------------------------------------
# Authentication evidence

# Deterministic order of schemes in AuthEvidence: gateway keys first, then the user credential,
# then ambient ones (cookies, certificates).
_SCHEME_ORDER: Final = (
    "subscription_key",
    "api_key",
    "jwt",
    "bearer",
    "basic",
    "digest",
    "other",
    "session",
    "mtls",
)
_SCHEME_RANK: Final = {s: i for i, s in enumerate(_SCHEME_ORDER)}

# Principal strength: lower wins. An opaque bearer token identifies its holder about as well as an
# API key does, so it sits just after API keys.
_P_JWT: Final = 0
_P_USER: Final = 1  # basic / digest user name
_P_SUBSCRIPTION: Final = 2
_P_API_KEY: Final = 3
_P_BEARER: Final = 4
_P_SESSION: Final = 5
_P_MTLS: Final = 6
_P_NONE: Final = 99

# Work caps for hostile input. A JWT header is tiny; payloads of real tokens stay well under
# 16 KiB even with group claims (servers' header limits are 8-16 KiB). Beyond the caps the token is
# reported as malformed without decoding.
_MAX_JWT_HEADER: Final = 2048
_MAX_JWT_PAYLOAD: Final = 16 * 1024
_MAX_BASIC: Final = 4096
_MAX_CLAIM: Final = 256  # longest string kept from a claim
_MAX_LIST_CLAIM: Final = 8  # list items joined for aud / scope
_MAX_QUERY_ITEMS: Final = 256
_MAX_COOKIES: Final = 64
_MAX_INT_CLAIM: Final = 2**53
# base64url of '{"', '{ ', '{\n', '{\t', '{\r': every JSON-object header starts with one of these.
# Only such tokens are treated as JWTs, so opaque tokens that merely contain dots stay "bearer".
_JWT_PREFIXES: Final = ("eyJ", "eyA", "ewo", "ewk", "ew0")

_NO_CREDENTIAL: Final = AuthEvidence(schemes=("none",))
_MALFORMED_HEADER: Final = JwtInfo(alg=None, malformed=True)
_DECODE_ERRORS: Final = (ValueError, binascii.Error, msgspec.MsgspecError, RecursionError, MemoryError)


def _b64url_json(segment: str) -> Any:
    """Decode one base64url JSON segment strictly; None when it is not valid base64 or JSON."""
    seg = segment.rstrip("=")
    try:
        raw = base64.b64decode(seg + "=" * (-len(seg) % 4), altchars=b"-_", validate=True)
        return msgspec.json.decode(raw)
    except _DECODE_ERRORS:
        return None


def _str_claim(value: object) -> str | None:
    if isinstance(value, str):
        return value[:_MAX_CLAIM]
    return None


def _list_claim(value: object, sep: str) -> str | None:
    """A string claim, or a list of strings joined (aud may be either; scp may be a list)."""
    if isinstance(value, str):
        return value[:_MAX_CLAIM]
    if isinstance(value, list):
        items = [v for v in value[:_MAX_LIST_CLAIM] if isinstance(v, str)]
        return sep.join(items)[:_MAX_CLAIM] if items else None
    return None


def _time_claim(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -_MAX_INT_CLAIM <= value <= _MAX_INT_CLAIM else None
    if isinstance(value, float) and math.isfinite(value) and abs(value) <= _MAX_INT_CLAIM:
        return int(value)
    return None


def _decode_jwt(token: str, hasher: PrincipalHasher, now: float) -> tuple[str, JwtInfo | None, str | None]:
    """(scheme, JwtInfo or None, hashed principal or None) for a bearer token. Decoded without
    verification: the sensor only reports what the token claims."""
    if not token.startswith(_JWT_PREFIXES):
        return "bearer", None, None
    dots = token.count(".")
    if dots == 0:
        return "bearer", None, None  # base64 JSON without dots: an opaque token, not a JWT
    if dots not in (1, 2, 4):  # 1: header.payload (signature missing), 2: JWS, 4: JWE
        return "bearer", _MALFORMED_HEADER, None
    segments = token.split(".")
    if len(segments[0]) > _MAX_JWT_HEADER:
        return "bearer", _MALFORMED_HEADER, None
    header = _b64url_json(segments[0])
    if not isinstance(header, dict):
        # Looks like a JWT but its header does not decode: a garbage credential, still a bearer.
        return "bearer", _MALFORMED_HEADER, None
    alg = _str_claim(header.get("alg"))
    kid = _str_claim(header.get("kid"))
    malformed = alg is None
    if dots == 4:
        # JWE: the claims are encrypted; the header is all there is to read.
        return "jwt", JwtInfo(alg=alg, kid=kid, malformed=malformed), None
    unsigned = (alg is not None and alg.lower() == "none") or dots == 1 or not segments[2]
    if dots == 1:
        malformed = True
    payload_seg = segments[1]
    claims = _b64url_json(payload_seg) if len(payload_seg) <= _MAX_JWT_PAYLOAD else None
    if not isinstance(claims, dict):
        return "jwt", JwtInfo(alg=alg, kid=kid, unsigned=unsigned, malformed=True), None
    sub = claims.get("sub")
    if isinstance(sub, int) and not isinstance(sub, bool):
        sub = str(sub)  # out of spec (sub is a string) but seen in the wild
    sub_hash = hasher.hash("jwt", sub) if isinstance(sub, str) and sub else None
    principal = sub_hash
    if principal is None:
        # Client-credentials tokens often carry no sub; the client id is then the principal.
        for name in ("client_id", "azp", "appid"):
            cid = claims.get(name)
            if isinstance(cid, str) and cid:
                principal = hasher.hash("jwt", cid)
                break
    exp = _time_claim(claims.get("exp"))
    scope = claims.get("scope")
    if scope is None:
        scope = claims.get("scp")
    info = JwtInfo(
        alg=alg,
        kid=kid,
        iss=_str_claim(claims.get("iss")),
        aud=_list_claim(claims.get("aud"), ","),
        sub_hash=sub_hash,
        exp=exp,
        iat=_time_claim(claims.get("iat")),
        scope=_list_claim(scope, " "),
        expired=exp is not None and exp < now,
        unsigned=unsigned,
        malformed=malformed,
    )
    return "jwt", info, principal


class _Found:
    """Accumulates schemes and the strongest principal while the request is read."""

    __slots__ = ("jwt", "key_in_query", "rank", "schemes", "value", "value_kind")

    def __init__(self) -> None:
        self.schemes: set[str] = set()
        self.rank = _P_NONE
        self.value_kind = ""
        self.value: str | None = None  # raw value, or already a hash when value_kind == ""
        self.jwt: JwtInfo | None = None
        self.key_in_query = False

    def principal(self, rank: int, kind: str, value: str) -> None:
        """Offer a raw principal; only the strongest is kept and, at the end, hashed."""
        if rank < self.rank and value:
            self.rank, self.value_kind, self.value = rank, kind, value

    def hashed_principal(self, rank: int, hashed: str) -> None:
        if rank < self.rank:
            self.rank, self.value_kind, self.value = rank, "", hashed

    def bearer(self, token: str, hasher: PrincipalHasher, now: float) -> None:
        memo = hasher._tokens
        key = hash(token)
        evidence = memo.get(key)
        if evidence is None:
            scheme, info, principal = _decode_jwt(token, hasher, now)
            if principal is not None:
                evidence = (scheme, info, principal, _P_JWT)
            else:
                evidence = (scheme, info, hasher.hash("bearer", token), _P_BEARER)
            memo[key] = evidence
        else:
            info = evidence[1]
            # "expired" depends on now: refresh the memo once, when the token crosses its exp.
            if info is not None and info.exp is not None and info.expired != (info.exp < now):
                evidence = (evidence[0], replace(info, expired=info.exp < now), evidence[2], evidence[3])
                memo[key] = evidence
        self.schemes.add(evidence[0])
        if evidence[1] is not None and self.jwt is None:
            self.jwt = evidence[1]
        self.hashed_principal(evidence[3], evidence[2])


def _basic_user(credentials: str) -> str | None:
    if len(credentials) > _MAX_BASIC:
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8", "replace")
    except (ValueError, binascii.Error):
        return None
    # Only the user name survives; the password is never stored, logged or hashed.
    user = decoded.partition(":")[0]
    return user or None


def _quoted_param(value: str, name: str) -> str | None:
    """``name="..."`` out of a parameter list (Digest's username, XFCC's Subject)."""
    start = value.find(name + '="')
    if start < 0:
        return None
    start += len(name) + 2
    end = value.find('"', start)
    return value[start:end] if end > start else None


def _authorization(value: str, found: _Found, hasher: PrincipalHasher, now: float) -> None:
    value = value.strip()
    if not value:
        return
    scheme, _, rest = value.partition(" ")
    rest = rest.strip()
    lowered = scheme.lower()
    if lowered == "bearer":
        if rest:
            found.bearer(rest, hasher, now)
    elif lowered == "basic":
        found.schemes.add("basic")
        user = _basic_user(rest)
        if user is not None:
            found.principal(_P_USER, "basic", user)
    elif lowered == "digest":
        found.schemes.add("digest")
        user = _quoted_param(rest, "username")
        if user:
            found.principal(_P_USER, "digest", user)
    elif not rest and scheme.startswith(_JWT_PREFIXES):
        # A bare JWT without the "Bearer" prefix: some APIs accept it, and it is still a JWT.
        found.bearer(scheme, hasher, now)
    else:
        found.schemes.add("other")


def _mtls_identity(value: str) -> str:
    """The identity in a client-certificate header: XFCC's Subject (else Hash) when present, else
    the whole value (a PEM / base64 certificate or a DN), hashed by the caller."""
    subject = _quoted_param(value, "Subject")
    if subject:
        return subject
    pos = value.find("Hash=")
    if pos >= 0:
        end = len(value)
        for sep in (";", ","):
            i = value.find(sep, pos)
            if 0 <= i < end:
                end = i
        return value[pos + 5 : end]
    return value


def authentication(
    headers: MultiMapping[str],
    query: MultiMapping[str],
    cfg: EvidenceConfig,
    hasher: PrincipalHasher,
    *,
    now: float,
    peer_cert_subject: str | None = None,
    peer_trusted: bool = False,
) -> AuthEvidence:
    """How the request authenticated (schemes), who it claims to be (hashed principal) and what
    its JWT says. Never raises: undecodable credentials are reported, not rejected."""
    found = _Found()

    for value in headers.getall("Authorization", ()):
        _authorization(value, found, hasher, now)

    sub_key = headers.get(SUBSCRIPTION_KEY_HEADER)
    if sub_key and sub_key.strip():
        found.schemes.add("subscription_key")
        found.principal(_P_SUBSCRIPTION, "subscription_key", sub_key.strip())

    for name in cfg.api_key_headers:
        key = headers.get(name)
        if key and key.strip():
            found.schemes.add("api_key")
            found.principal(_P_API_KEY, "api_key", key.strip())

    if query:
        kinds = cfg._query_kinds
        for n, (qname, qvalue) in enumerate(query.items()):
            if n >= _MAX_QUERY_ITEMS:
                break
            kind = kinds.get(qname.lower())
            if kind is None or not qvalue:
                continue
            found.key_in_query = True
            if kind == _Q_TOKEN:
                found.bearer(qvalue, hasher, now)
            elif kind == _Q_SUBSCRIPTION:
                found.schemes.add("subscription_key")
                found.principal(_P_SUBSCRIPTION, "subscription_key", qvalue)
            else:
                found.schemes.add("api_key")
                found.principal(_P_API_KEY, "api_key", qvalue)

    session_names = cfg.session_cookies
    if session_names:
        for cookie_header in headers.getall("Cookie", ()):
            for n, part in enumerate(cookie_header.split(";", _MAX_COOKIES)):
                if n >= _MAX_COOKIES:
                    break
                cname, eq, cvalue = part.partition("=")
                if eq and cname.strip().lower() in session_names:
                    cvalue = cvalue.strip().strip('"')
                    if cvalue:
                        found.schemes.add("session")
                        found.principal(_P_SESSION, "session", cvalue)

    if peer_cert_subject:
        found.schemes.add("mtls")
        found.principal(_P_MTLS, "mtls", peer_cert_subject)
    elif peer_trusted:
        for name in MTLS_HEADERS:
            cert = headers.get(name)
            if cert and cert.strip():
                found.schemes.add("mtls")
                found.principal(_P_MTLS, "mtls", _mtls_identity(cert.strip()))
                break

    if not found.schemes:
        return _NO_CREDENTIAL
    schemes = tuple(sorted(found.schemes, key=_SCHEME_RANK.__getitem__))
    principal: str | None = None
    if found.value is not None:
        principal = found.value if not found.value_kind else hasher.hash(found.value_kind, found.value)
    return AuthEvidence(schemes=schemes, principal=principal, jwt=found.jwt, key_in_query=found.key_in_query)
