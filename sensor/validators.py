"""Validators for data classification: the checks that turn a regex candidate into a finding.

A regex says "this looks like a card number"; a validator says "and it is one": Luhn, mod-97, the
national check digits, issuer prefixes, date plausibility, Shannon entropy. Each validator is a pure
function ``(candidate: str) -> bool`` that never raises (any malformed input is simply ``False``) and
is registered by name in ``VALIDATORS`` so that ``policies/datatypes.yaml`` (and users' own files)
can refer to it without touching code.

Candidates arrive as the regex matched them (separators included); each validator strips the
separators it tolerates itself, so the YAML patterns can stay simple.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Final

import msgspec
import phonenumbers

__all__ = [
    "VALIDATORS",
    "Validator",
    "aba_routing",
    "bic",
    "credit_card",
    "de_steuer_id",
    "entropy",
    "es_dni",
    "fr_insee",
    "github_token",
    "iban",
    "it_codice_fiscale",
    "jwt",
    "luhn",
    "nl_bsn",
    "pl_pesel",
    "se_personnummer",
    "shannon_entropy",
    "uk_nhs",
    "uk_nino",
    "us_itin",
    "us_ssn",
]

Validator = Callable[[str], bool]

_SEPARATORS: Final = str.maketrans("", "", " -./")


def _digits(candidate: str) -> str:
    """The candidate without the separators people type between digit groups."""
    return candidate.translate(_SEPARATORS)


# --------------------------------------------------------------------------------------------------
# Checksums shared by several types


def luhn(number: str) -> bool:
    """The Luhn (mod 10) check over a string of digits."""
    if not number.isdigit() or not number.isascii():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` (0.0 for the empty string)."""
    n = len(value)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


# --------------------------------------------------------------------------------------------------
# Financial

# Issuer identification: (prefix ranges as (low, high) over the first ``width`` digits, lengths).
# Kept to the networks that issue most cards; a number outside every range is not reported even if
# its Luhn check passes (random 16-digit ids pass Luhn one time in ten).
_CARD_ISSUERS: Final[tuple[tuple[int, int, int, frozenset[int]], ...]] = (
    # (width, low, high, lengths)
    (1, 4, 4, frozenset({13, 16, 19})),  # Visa
    (2, 51, 55, frozenset({16})),  # Mastercard
    (4, 2221, 2720, frozenset({16})),  # Mastercard 2-series
    (2, 34, 34, frozenset({15})),  # American Express
    (2, 37, 37, frozenset({15})),  # American Express
    (4, 6011, 6011, frozenset({16, 17, 18, 19})),  # Discover
    (3, 644, 649, frozenset({16, 17, 18, 19})),  # Discover
    (2, 65, 65, frozenset({16, 17, 18, 19})),  # Discover
    (4, 3528, 3589, frozenset({16, 17, 18, 19})),  # JCB
    (3, 300, 305, frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (2, 36, 36, frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (2, 38, 39, frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (2, 62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
    (4, 2200, 2204, frozenset({16, 17, 18, 19})),  # Mir
    (4, 5018, 5018, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (4, 5020, 5020, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (4, 5038, 5038, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (4, 5893, 5893, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (4, 6304, 6304, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (4, 6759, 6759, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (4, 6761, 6763, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
)

# How people group card digits: no separator, groups of four (the last may be short), or the
# 4-6-5 / 4-6-4 layout of Amex and Diners. Anything else ("4111 11 1111111111") is not a card.
_CARD_GROUPING: Final = re.compile(
    r"\d+|\d{4}(?:([ -])\d{4})(?:\1\d{4}){1,2}(?:\1\d{1,4})?|\d{4}([ -])\d{6}\2\d{4,5}", re.ASCII
)


def credit_card(candidate: str) -> bool:
    """Payment card number: consistent grouping, a known issuer prefix and length, Luhn."""
    if _CARD_GROUPING.fullmatch(candidate) is None:
        return False
    number = _digits(candidate)
    n = len(number)
    if n < 12 or n > 19:
        return False
    for width, low, high, lengths in _CARD_ISSUERS:
        if n in lengths and low <= int(number[:width]) <= high:
            return luhn(number)
    return False


# IBAN length per country (ISO 13616 registry). A country not listed is not an IBAN country.
_IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def _mod97(alnum: str) -> int:
    """ISO 7064 mod 97-10 remainder of an alphanumeric string (letters A=10 .. Z=35)."""
    rem = 0
    for ch in alnum:
        if "0" <= ch <= "9":
            rem = (rem * 10 + ord(ch) - 48) % 97
        elif "A" <= ch <= "Z":
            rem = (rem * 100 + ord(ch) - 55) % 97
        else:
            return -1
    return rem


def iban(candidate: str) -> bool:
    """IBAN: per-country length and the mod-97 check (remainder 1)."""
    value = candidate.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(value[:2]) != len(value) or not value[2:4].isdigit():
        return False
    return _mod97(value[4:] + value[:4]) == 1


# ISO 3166-1 alpha-2 codes (plus XK, used by banks for Kosovo): the country part of a BIC.
_ISO_COUNTRIES: Final = frozenset(
    code
    for line in (
        "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ",
        "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM",
        "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS",
        "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN",
        "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ",
        "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM",
        "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV",
        "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI",
        "VN VU WF WS XK YE YT ZA ZM ZW",
    )
    for code in line.split()
)
_BIC: Final = re.compile(r"[A-Z]{4}([A-Z]{2})[A-Z0-9]{2}(?:[A-Z0-9]{3})?", re.ASCII)


def bic(candidate: str) -> bool:
    """SWIFT/BIC (ISO 9362): bank code, an ISO country, location (second char never "O"), branch."""
    m = _BIC.fullmatch(candidate)
    if m is None or m.group(1) not in _ISO_COUNTRIES:
        return False
    # "O" as the second location character is not allocated (it marked test BICs historically).
    return candidate[7] != "O"


def bic_unhinted(candidate: str) -> bool:
    """A BIC found without a key hint: only the 11-character form with a branch that cannot be an
    ordinary upper-case word ("XXX" or a digit in location/branch), else eight-letter words like
    "ABSTRACT" would qualify."""
    if len(candidate) != 11 or not bic(candidate):
        return False
    tail = candidate[6:]
    return candidate.endswith("XXX") or any(c.isdigit() for c in tail)


def aba_routing(candidate: str) -> bool:
    """ABA routing transit number: 9 digits, a Federal Reserve prefix, 3-7-1 weighted checksum."""
    d = candidate
    if len(d) != 9 or not d.isdigit() or not d.isascii():
        return False
    prefix = int(d[:2])
    if not (prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80):
        return False
    w = (3, 7, 1) * 3
    return sum(int(c) * k for c, k in zip(d, w, strict=True)) % 10 == 0 and d != "000000000"


# --------------------------------------------------------------------------------------------------
# Identity


def us_ssn(candidate: str) -> bool:
    """US SSN: area not 000, 666 or 900-999; group not 00; serial not 0000; not advertised samples."""
    d = _digits(candidate)
    if len(d) != 9 or not d.isdigit() or not d.isascii():
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    # Numbers printed on sample cards and in advertising, used by many people, never real.
    return d not in ("078051120", "219099999", "123456789")


def us_itin(candidate: str) -> bool:
    """US ITIN: 9XX-GG-SSSS with the group in the IRS-issued ranges."""
    d = _digits(candidate)
    if len(d) != 9 or not d.isdigit() or not d.isascii() or d[0] != "9":
        return False
    group = int(d[3:5])
    return 50 <= group <= 65 or 70 <= group <= 88 or 90 <= group <= 92 or 94 <= group <= 99


_NINO: Final = re.compile(r"([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])\d{6}[A-D]", re.ASCII)
_NINO_BAD_PREFIX: Final = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def uk_nino(candidate: str) -> bool:
    """UK National Insurance number: allowed prefix letters, six digits, suffix A-D."""
    value = candidate.replace(" ", "").upper()
    m = _NINO.fullmatch(value)
    return m is not None and m.group(1) not in _NINO_BAD_PREFIX


def uk_nhs(candidate: str) -> bool:
    """NHS number: ten digits, mod-11 check digit (a remainder giving 10 is never issued)."""
    d = _digits(candidate)
    if len(d) != 10 or not d.isdigit() or not d.isascii():
        return False
    total = sum(int(c) * (10 - i) for i, c in enumerate(d[:9]))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(d[9]) and len(set(d)) > 1


def nl_bsn(candidate: str) -> bool:
    """Dutch BSN (burgerservicenummer): nine digits, the "11-proof" with weight -1 on the last."""
    d = _digits(candidate)
    if len(d) == 8:
        d = "0" + d  # older numbers are written without the leading zero
    if len(d) != 9 or not d.isdigit() or not d.isascii() or d.startswith("00"):
        return False
    total = sum(int(c) * w for c, w in zip(d, (9, 8, 7, 6, 5, 4, 3, 2, -1), strict=True))
    return total % 11 == 0 and total != 0


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        _dt.date(year, month, day)
    except ValueError:
        return False
    return True


def pl_pesel(candidate: str) -> bool:
    """Polish PESEL: eleven digits, a valid birth date (century in the month) and the checksum."""
    d = candidate
    if len(d) != 11 or not d.isdigit() or not d.isascii():
        return False
    weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    check = (10 - sum(int(c) * w for c, w in zip(d, weights, strict=False)) % 10) % 10
    if check != int(d[10]):
        return False
    yy, mm, dd = int(d[:2]), int(d[2:4]), int(d[4:6])
    century = {0: 1900, 1: 2000, 2: 2100, 3: 2200, 4: 1800}.get(mm // 20)
    return century is not None and _valid_date(century + yy, mm % 20, dd)


_PERSONNUMMER: Final = re.compile(r"(?:\d{2})?(\d{6})[-+]?(\d{4})", re.ASCII)


def se_personnummer(candidate: str) -> bool:
    """Swedish personnummer / samordningsnummer: a valid date (day + 60 for the latter) and Luhn
    over the ten-digit form."""
    m = _PERSONNUMMER.fullmatch(candidate)
    if m is None:
        return False
    ten = m.group(1) + m.group(2)
    yy, mm, dd = int(ten[:2]), int(ten[2:4]), int(ten[4:6])
    if dd > 60:
        dd -= 60
    # The century is not in the ten-digit form; 2000 is a leap year, so any valid MM-DD passes.
    year = int(candidate[:4]) if len(_digits(candidate)) == 12 else 2000 + yy
    return _valid_date(year, mm, dd) and luhn(ten)


_DNI_LETTERS: Final = "TRWAGMYFPDXBNJZSQVHLCKE"
_DNI: Final = re.compile(r"([XYZ]|\d)(\d{7})-?([A-Z])", re.ASCII)


def es_dni(candidate: str) -> bool:
    """Spanish DNI (8 digits + letter) and NIE (X/Y/Z + 7 digits + letter): the mod-23 letter."""
    m = _DNI.fullmatch(candidate.upper())
    if m is None:
        return False
    first = m.group(1)
    lead = "XYZ".find(first)
    number = int((str(lead) if lead >= 0 else first) + m.group(2))
    return _DNI_LETTERS[number % 23] == m.group(3)


# Codice fiscale check character: values of odd (1st, 3rd, ...) and even positions.
_CF_ODD: Final[dict[str, int]] = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8,
         12, 14, 16, 10, 22, 25, 24, 23),
        strict=True,
    )
)  # fmt: skip
_CF: Final = re.compile(
    r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]", re.ASCII
)


def it_codice_fiscale(candidate: str) -> bool:
    """Italian codice fiscale: structure (with omocodia digit substitutions) and the check letter."""
    value = candidate.upper()
    if _CF.fullmatch(value) is None:
        return False
    total = 0
    for i, ch in enumerate(value[:15]):
        if i % 2 == 0:  # 1-based odd positions
            total += _CF_ODD[ch]
        else:
            total += int(ch) if ch.isdigit() else ord(ch) - 65
    return chr(65 + total % 26) == value[15]


def de_steuer_id(candidate: str) -> bool:
    """German Steuerliche Identifikationsnummer: eleven digits, no leading zero, in the first ten one
    digit appears twice or three times and the rest at most once, ISO 7064 mod 11,10 check digit."""
    d = _digits(candidate)
    if len(d) != 11 or not d.isdigit() or not d.isascii() or d[0] == "0":
        return False
    counts = sorted(Counter(d[:10]).values(), reverse=True)
    if counts[0] not in (2, 3) or (len(counts) > 1 and counts[1] > 1):
        return False
    product = 10
    for ch in d[:10]:
        total = (int(ch) + product) % 10
        if total == 0:
            total = 10
        product = (total * 2) % 11
    check = 11 - product
    if check == 10:
        check = 0
    return check == int(d[10])


_NIR: Final = re.compile(r"([12])(\d{2})(\d{2})(\d{2}|2[AB])(\d{3})(\d{3})(\d{2})", re.ASCII)


def fr_insee(candidate: str) -> bool:
    """French NIR (numéro INSEE): sex, year, month (01-12, or 20-42/50-99 for unknown), department
    (Corsica 2A/2B), and the mod-97 key."""
    value = candidate.replace(" ", "").upper()
    m = _NIR.fullmatch(value)
    if m is None:
        return False
    month = int(m.group(3))
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        return False
    body = value[:13]
    # Corsica: 2A and 2B are replaced by 19 and 18 for the key computation.
    if m.group(4) == "2A":
        number = int(body.replace("2A", "19", 1))
    elif m.group(4) == "2B":
        number = int(body.replace("2B", "18", 1))
    else:
        number = int(body)
    return 97 - number % 97 == int(m.group(7))


# --------------------------------------------------------------------------------------------------
# Credentials


def _b64url_json(segment: str) -> object:
    """One base64url JSON segment decoded strictly; None when it is not base64 or not JSON."""
    seg = segment.rstrip("=")
    if len(seg) > 16 * 1024:
        return None
    try:
        raw = base64.b64decode(seg + "=" * (-len(seg) % 4), altchars=b"-_", validate=True)
        return msgspec.json.decode(raw)
    except (ValueError, binascii.Error, msgspec.DecodeError, RecursionError):
        return None


def jwt(candidate: str) -> bool:
    """JWT (JWS or JWE): dot-separated base64url segments whose header decodes to a JSON object with
    an ``alg``; for a JWS the payload must decode to a JSON object too."""
    parts = candidate.split(".")
    if len(parts) not in (3, 5):
        return False
    header = _b64url_json(parts[0])
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return False
    if len(parts) == 5:
        return True
    return isinstance(_b64url_json(parts[1]), dict)


_B62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(reversed(out)).rjust(width, "0")


def github_token(candidate: str) -> bool:
    """GitHub token (ghp_/gho_/ghu_/ghs_/ghr_, 2021 format): the last six characters are the
    base62 CRC32 of the thirty random ones. Fine-grained ``github_pat_`` tokens carry no public
    checksum: their structure and entropy are checked instead."""
    if candidate.startswith("github_pat_"):
        rest = candidate[len("github_pat_") :]
        return len(rest) == 82 and rest[22] == "_" and shannon_entropy(rest) > 4.0
    if len(candidate) != 40 or candidate[3] != "_" or not candidate.startswith("gh"):
        return False
    body = candidate[4:34]
    return _base62(binascii.crc32(body.encode("ascii", "replace")), 6) == candidate[34:]


def entropy(candidate: str) -> bool:
    """A generic secret: at least 16 characters, Shannon entropy of 3.5 bits per character or more,
    and at least two character classes (so long words, hex digests of the same letter and simple
    numbers do not qualify)."""
    value = candidate.strip()
    if len(value) < 16 or " " in value:
        return False
    classes = (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )
    return classes >= 2 and shannon_entropy(value) >= 3.5


def session_token(candidate: str) -> bool:
    """A session identifier: shorter than a generic secret (16+), still random-looking."""
    value = candidate.strip().strip('"')
    return len(value) >= 16 and " " not in value and shannon_entropy(value) >= 3.0


def aws_secret_key(candidate: str) -> bool:
    """AWS secret access key: 40 base64 characters with the variety of random output."""
    return (
        len(candidate) == 40
        and any(c.islower() for c in candidate)
        and any(c.isupper() for c in candidate)
        and any(c.isdigit() for c in candidate)
        and shannon_entropy(candidate) >= 4.0
    )


_AWS_KEY_ID: Final = re.compile(r"(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA|AGPA|ANPA|ANVA|APKA|AIPA)[A-Z2-7]{16}", re.ASCII)


def aws_access_key_id(candidate: str) -> bool:
    """AWS access key id: a known prefix and sixteen base32 characters, not a repeated filler."""
    return _AWS_KEY_ID.fullmatch(candidate) is not None and len(set(candidate[4:])) >= 6


def azure_storage_key(candidate: str) -> bool:
    """Azure storage account key: 64 random bytes in base64 (88 characters, "==" padding)."""
    if len(candidate) != 88 or not candidate.endswith("=="):
        return False
    try:
        raw = base64.b64decode(candidate, validate=True)
    except (ValueError, binascii.Error):
        return False
    return len(raw) == 64 and len(set(raw)) >= 32


def azure_sas_signature(candidate: str) -> bool:
    """The ``sig`` of a SAS token: a base64 HMAC-SHA256 (32 bytes), possibly URL-encoded."""
    value = candidate.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=").replace("%2b", "+")
    value = value.replace("%2f", "/").replace("%3d", "=")
    if "sig=" in value:
        value = value.rsplit("sig=", 1)[1].split("&", 1)[0]
    try:
        raw = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return False
    return len(raw) == 32


def pem_private_key(candidate: str) -> bool:
    """PEM private key: a BEGIN line and base64 body (at least 64 characters) after it."""
    _, _, body = candidate.partition("-----\n")
    if not body:
        _, _, body = candidate.partition("-----\r\n")
    body = "".join(body.split())
    body = body.split("-----", 1)[0]
    if ":" in candidate[:200] and "Proc-Type" in candidate[:200]:
        return True  # legacy encrypted PEM with headers before the base64 body
    return len(body) >= 64 and re.fullmatch(r"[A-Za-z0-9+/=]+", body) is not None


# --------------------------------------------------------------------------------------------------
# Personal

# Regions tried for a phone number written without "+": the locales the corpus and most of our users
# see. A bare number must be valid in one of them (and only arrives here under a phone-ish key).
PHONE_REGIONS: Final = ("US", "GB", "DE", "FR", "NL", "PL", "SE", "ES", "IT")


def phone(candidate: str) -> bool:
    """Phone number, validated with ``phonenumbers``: "+" numbers by their country code, bare ones
    against ``PHONE_REGIONS``."""
    value = candidate.strip()
    if len(value) > 32 or sum(c.isdigit() for c in value) < 7:
        return False
    regions: tuple[str | None, ...] = (None,) if value.startswith("+") else PHONE_REGIONS
    for region in regions:
        try:
            parsed = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return True
    return False


_EMAIL_TLD: Final = re.compile(r"[A-Za-z]{2,24}", re.ASCII)


def email(candidate: str) -> bool:
    """E-mail address: local part without leading/trailing/double dots, a dotted domain whose labels
    do not start or end with "-", an alphabetic TLD, and not a file name like ``logo@2x.png``."""
    local, _, domain = candidate.rpartition("@")
    if not local or len(local) > 64 or len(domain) > 253:
        return False
    if local[0] == "." or local[-1] == "." or ".." in local:
        return False
    labels = domain.split(".")
    if len(labels) < 2 or _EMAIL_TLD.fullmatch(labels[-1]) is None:
        return False
    if labels[-1].lower() in ("png", "jpg", "jpeg", "gif", "svg", "webp"):
        return False
    return all(label and label[0] != "-" and label[-1] != "-" for label in labels)


_DATE_FORMATS: Final = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d-%m-%Y", "%Y%m%d")


def birth_date(candidate: str) -> bool:
    """A date of birth: a real calendar date between 1900 and today (an ISO date-time is cut to its
    date)."""
    value = candidate.strip()[:10] if "T" in candidate else candidate.strip()
    for fmt in _DATE_FORMATS:
        try:
            day = _dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
        return day.year >= 1900 and day <= _dt.date.today()
    return False


def _ip(candidate: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def ip_public(candidate: str) -> bool:
    """A globally routable IP address."""
    addr = _ip(candidate)
    return addr is not None and addr.is_global and not addr.is_multicast


def ip_private(candidate: str) -> bool:
    """A private, loopback, link-local or shared (CGNAT) address; not unspecified/documentation."""
    addr = _ip(candidate)
    if addr is None or addr.is_unspecified or addr.is_global or addr.is_multicast:
        return False
    if isinstance(addr, ipaddress.IPv4Address) and addr.is_reserved:
        return False
    return addr.is_private or addr.is_loopback or addr.is_link_local or addr in _CGNAT


_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")


def non_empty(candidate: str) -> bool:
    """Any value with some content (for types detected by key name alone)."""
    return bool(candidate.strip())


VALIDATORS: Final[dict[str, Validator]] = {
    "luhn": lambda c: luhn(_digits(c)),
    "credit_card": credit_card,
    "iban": iban,
    "bic": bic,
    "bic_unhinted": bic_unhinted,
    "aba_routing": aba_routing,
    "us_ssn": us_ssn,
    "us_itin": us_itin,
    "uk_nino": uk_nino,
    "uk_nhs": uk_nhs,
    "nl_bsn": nl_bsn,
    "pl_pesel": pl_pesel,
    "se_personnummer": se_personnummer,
    "es_dni": es_dni,
    "it_codice_fiscale": it_codice_fiscale,
    "de_steuer_id": de_steuer_id,
    "fr_insee": fr_insee,
    "jwt": jwt,
    "github_token": github_token,
    "entropy": entropy,
    "session_token": session_token,
    "aws_secret_key": aws_secret_key,
    "aws_access_key_id": aws_access_key_id,
    "azure_storage_key": azure_storage_key,
    "azure_sas_signature": azure_sas_signature,
    "pem_private_key": pem_private_key,
    "phone": phone,
    "email": email,
    "birth_date": birth_date,
    "ip_public": ip_public,
    "ip_private": ip_private,
    "non_empty": non_empty,
}
