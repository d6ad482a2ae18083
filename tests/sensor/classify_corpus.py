"""A labelled corpus for data classification: JSON bodies with realistic field names, positives for
every bundled type and near-miss negatives, generated with Faker across locales and a fixed seed.

Each ``Doc`` is a JSON object plus the set of ``(type id, path template)`` that a perfect classifier
reports for it. Positives carry the values the real world produces (Faker's checksummed national ids
and IBANs, phone numbers that ``phonenumbers`` accepts for the locale, tokens with their real
structure); negatives are what sits next to them in real APIs and looks alike: Luhn-failing 16-digit
numbers, order ids, timestamps, UUIDs, numeric ids that look like phones, IBANs with a wrong check,
random 9-digit numbers under non-identity keys, version strings.

Used by ``tests/sensor/test_classify.py`` (the quality goals) and ``bench/classify_quality.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import phonenumbers
from faker import Faker

from sensor import validators
from sensor.walk import _segment, walk_json

if TYPE_CHECKING:
    from sensor.classify import Classifier

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "pl_PL", "sv_SE", "es_ES", "it_IT")
REGIONS = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "nl_NL": "NL", "pl_PL": "PL", "sv_SE": "SE",
           "es_ES": "ES", "it_IT": "IT"}  # fmt: skip

# Types whose validation is a checksum: the >= 0.99 goals.
CHECKSUM_TYPES = frozenset(
    {"credit_card", "iban", "aba_routing", "uk_nhs_number", "nl_bsn", "pl_pesel", "se_personnummer", "es_dni",
     "it_codice_fiscale", "de_steuer_id", "fr_insee", "github_token", "jwt", "us_ssn", "us_itin", "uk_nino",
     "swift_bic"}
)  # fmt: skip


@dataclass
class Doc:
    body: dict[str, object]
    labels: set[tuple[str, str]] = field(default_factory=set)

    def encode(self) -> bytes:
        return json.dumps(self.body).encode()


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.fakers = {}
        for i, loc in enumerate(LOCALES):
            f = Faker(loc)
            f.seed_instance(seed + i)
            self.fakers[loc] = f

    def fk(self, loc: str | None = None) -> Faker:
        return self.fakers[loc or self.rnd.choice(LOCALES)]

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rnd.choice(alphabet) for _ in range(n))

    def pick(self, *options: str) -> str:
        return self.rnd.choice(options)

    # -- positives: each returns (key, value) ---------------------------------------------------

    def credit_card(self) -> tuple[str, str]:
        f = self.fk("en_US")
        while True:
            number = f.credit_card_number(self.pick("visa16", "visa13", "mastercard", "amex", "discover", "diners"))
            if validators.credit_card(number):
                break
        if len(number) == 16 and self.rnd.random() < 0.4:
            sep = self.pick(" ", "-")
            number = sep.join(number[i : i + 4] for i in range(0, 16, 4))
        return self.pick("card_number", "cardNumber", "cc_number", "pan", "number"), number

    def iban(self) -> tuple[str, str]:
        value = self.fk(self.pick("de_DE", "fr_FR", "nl_NL", "pl_PL", "es_ES", "it_IT", "en_GB")).iban()
        if self.rnd.random() < 0.4:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return self.pick("iban", "IBAN", "bank_account_iban", "payout_iban"), value

    def swift_bic(self) -> tuple[str, str]:
        while True:
            value = self.fk().swift(length=self.rnd.choice((8, 11)))
            if validators.bic(value):
                return self.pick("bic", "swift", "swiftCode", "bank_bic"), value

    def aba_routing(self) -> tuple[str, str]:
        return self.pick("routing_number", "routingNumber", "aba"), self.fk("en_US").aba()

    def us_ssn(self) -> tuple[str, str]:
        value = self.fk("en_US").ssn()
        if self.rnd.random() < 0.3:
            return self.pick("ssn", "social_security_number"), value.replace("-", "")
        return self.pick("ssn", "socialSecurityNumber", "national_id"), value

    def us_itin(self) -> tuple[str, str]:
        return self.pick("itin", "taxpayer_id"), self.fk("en_US").itin()

    def uk_nino(self) -> tuple[str, str]:
        first = "ABCEGHJKLMNOPRSTWXYZ"
        second = "ABCEGHJKLMNPRSTWXYZ"
        while True:
            prefix = self.rnd.choice(first) + self.rnd.choice(second)
            if prefix not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
                break
        digits = self.chars(string.digits, 6)
        value = prefix + digits + self.rnd.choice("ABCD")
        if self.rnd.random() < 0.4:
            value = f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {value[-1]}"
        return self.pick("nino", "ni_number", "national_insurance_number"), value

    def uk_nhs_number(self) -> tuple[str, str]:
        while True:
            d = self.chars(string.digits, 9)
            check = 11 - sum(int(c) * (10 - i) for i, c in enumerate(d)) % 11
            check = 0 if check == 11 else check
            if check != 10:
                value = d + str(check)
                break
        if self.rnd.random() < 0.5:
            value = f"{value[:3]} {value[3:6]} {value[6:]}"
        return self.pick("nhs_number", "nhsNumber"), value

    def nl_bsn(self) -> tuple[str, str]:
        return self.pick("bsn", "burgerservicenummer"), self.fk("nl_NL").ssn()

    def pl_pesel(self) -> tuple[str, str]:
        return self.pick("pesel", "numer_pesel"), self.fk("pl_PL").pesel()

    def se_personnummer(self) -> tuple[str, str]:
        return self.pick("personnummer", "personal_number"), self.fk("sv_SE").ssn()

    def es_dni(self) -> tuple[str, str]:
        f = self.fk("es_ES")
        return self.pick("dni", "nif", "documento"), f.nif() if self.rnd.random() < 0.6 else f.nie()

    def it_codice_fiscale(self) -> tuple[str, str]:
        return self.pick("codice_fiscale", "codiceFiscale", "tax_code"), self.fk("it_IT").ssn()

    def de_steuer_id(self) -> tuple[str, str]:
        while True:
            digits = self.rnd.sample("0123456789", 9)
            if digits[0] == "0":
                continue
            dup = self.rnd.choice(digits)
            seq = [*digits, dup]
            self.rnd.shuffle(seq)
            if seq[0] == "0":
                continue
            body = "".join(seq)
            for check in "0123456789":
                if validators.de_steuer_id(body + check):
                    return self.pick("steuer_id", "steuerId", "steueridentifikationsnummer"), body + check

    def fr_insee(self) -> tuple[str, str]:
        value = self.fk("fr_FR").ssn()
        if self.rnd.random() < 0.3:
            value = " ".join((value[0], value[1:3], value[3:5], value[5:7], value[7:10], value[10:13], value[13:]))
        return self.pick("insee", "numero_securite_sociale", "nir"), value

    def email(self) -> tuple[str, str]:
        return self.pick("email", "contactEmail", "billing_email", "user_email", "mail"), self.fk().email()

    def phone_number(self) -> tuple[str, str]:
        while True:
            loc = self.rnd.choice(LOCALES)
            raw = self.fk(loc).phone_number()
            try:
                parsed = phonenumbers.parse(raw, REGIONS[loc])
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_valid_number(parsed):
                continue
            fmt = self.rnd.choice(
                (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                 phonenumbers.PhoneNumberFormat.NATIONAL)
            )  # fmt: skip
            return self.pick(
                "phone", "phoneNumber", "mobile", "telephone", "contact_phone"
            ), phonenumbers.format_number(parsed, fmt)

    def date_of_birth(self) -> tuple[str, str]:
        d = self.fk().date_of_birth(minimum_age=18, maximum_age=90)
        value = d.isoformat() if self.rnd.random() < 0.6 else d.strftime(self.pick("%d.%m.%Y", "%d/%m/%Y"))
        return self.pick("dob", "date_of_birth", "birthDate", "geburtsdatum"), value

    def person_name(self) -> tuple[str, str]:
        f = self.fk()
        key = self.pick("first_name", "lastName", "full_name", "surname", "givenName", "cardholder_name")
        return key, f.name() if "full" in key or "holder" in key else f.first_name()

    def postal_address(self) -> tuple[str, str]:
        f = self.fk()
        return self.pick("address", "street_address", "line1", "shippingAddress"), f.address()

    def password(self) -> tuple[str, str]:
        return self.pick("password", "new_password", "passwd"), self.fk().password(length=self.rnd.randint(8, 20))

    def passport_number(self) -> tuple[str, str]:
        return self.pick("passport_number", "passportNo", "passport"), self.fk("en_US").passport_number()

    def jwt(self) -> tuple[str, str]:
        def seg(obj: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        header = seg({"alg": self.pick("RS256", "HS256", "ES256"), "typ": "JWT"})
        payload = seg(
            {"sub": str(uuid.UUID(int=self.rnd.getrandbits(128))), "iat": 1700000000 + self.rnd.randint(0, 10**6)}
        )
        sig = base64.urlsafe_b64encode(self.rnd.randbytes(32)).rstrip(b"=").decode()
        return self.pick("id_token", "access_token", "jwt"), f"{header}.{payload}.{sig}"

    def pem_private_key(self) -> tuple[str, str]:
        body = base64.b64encode(self.rnd.randbytes(600)).decode()
        lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        kind = self.pick("RSA ", "EC ", "")
        return "private_key", f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----\n"

    def aws_access_key_id(self) -> tuple[str, str]:
        return self.pick("aws_access_key_id", "accessKeyId"), self.pick("AKIA", "ASIA") + self.chars(
            string.ascii_uppercase + "234567", 16
        )

    def aws_secret_access_key(self) -> tuple[str, str]:
        while True:
            value = self.chars(string.ascii_letters + string.digits + "/+", 40)
            if validators.aws_secret_key(value):
                return self.pick("aws_secret_access_key", "secretAccessKey"), value

    def github_token(self) -> tuple[str, str]:
        body = self.chars(string.ascii_letters + string.digits, 30)
        value = self.pick("ghp", "gho", "ghs") + "_" + body + validators._base62(binascii.crc32(body.encode()), 6)
        return self.pick("token", "github_token", "gh_token"), value

    def slack_token(self) -> tuple[str, str]:
        value = f"xoxb-{self.chars(string.digits, 11)}-{self.chars(string.digits, 12)}-" + self.chars(
            string.ascii_letters + string.digits, 24
        )
        return self.pick("slack_token", "bot_token"), value

    def google_api_key(self) -> tuple[str, str]:
        return self.pick("google_api_key", "maps_key"), "AIza" + self.chars(
            string.ascii_letters + string.digits + "_-", 35
        )

    def stripe_key(self) -> tuple[str, str]:
        return self.pick("secret_key", "stripe_secret"), self.pick("sk_live_", "sk_test_", "rk_live_") + self.chars(
            string.ascii_letters + string.digits, self.rnd.randint(24, 99)
        )

    def generic_secret(self) -> tuple[str, str]:
        value = self.pick(
            self.chars(string.ascii_letters + string.digits, 32),
            self.chars(string.hexdigits.lower()[:16], 40),
            base64.urlsafe_b64encode(self.rnd.randbytes(24)).decode(),
        )
        return self.pick("client_secret", "api_key", "apiKey", "x-api-key", "webhook_secret", "refresh_token"), value

    def session_token(self) -> tuple[str, str]:
        return self.pick("session_id", "sessionId", "JSESSIONID"), self.chars("0123456789abcdef", 32)

    def azure_storage_connection_string(self) -> tuple[str, str]:
        key = base64.b64encode(self.rnd.randbytes(64)).decode()
        account = self.chars(string.ascii_lowercase + string.digits, 12)
        return "connection_string", (
            f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={key};EndpointSuffix=core.windows.net"
        )

    def azure_sas_token(self) -> tuple[str, str]:
        sig = (
            base64.b64encode(self.rnd.randbytes(32))
            .decode()
            .replace("+", "%2B")
            .replace("/", "%2F")
            .replace("=", "%3D")
        )
        return "download_url", (
            f"https://acct.blob.core.windows.net/c/f.pdf?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z"
            f"&spr=https&sig={sig}"
        )

    # -- near-miss negatives: (key, value) with no data type ------------------------------------

    def negative(self) -> tuple[str, object]:
        kind = self.rnd.randrange(16)
        f = self.fk()
        if kind == 0:  # a 16-digit number that fails Luhn, even under a card key
            while True:
                n = self.rnd.choice("3456") + self.chars(string.digits, 15)
                if not validators.luhn(n):
                    return self.pick("card_number", "invoice_number", "reference"), n
        if kind == 1:
            return self.pick("order_id", "orderId"), self.pick("ORD-", "SO", "") + str(self.rnd.randint(10**5, 10**9))
        if kind == 2:
            return self.pick("created", "updated_at", "timestamp"), self.rnd.randint(1_500_000_000, 1_800_000_000)
        if kind == 3:
            return self.pick("id", "request_id", "trace_id"), str(uuid.UUID(int=self.rnd.getrandbits(128)))
        if kind == 4:  # a number shaped like a phone, not under a phone key
            return self.pick("customer_ref", "account_id", "external_id"), "0" + self.chars(string.digits, 9)
        if kind == 5:  # an IBAN with a wrong check
            iban = self.fk(self.pick("de_DE", "fr_FR", "nl_NL")).iban()
            bad = iban[:2] + f"{(int(iban[2:4]) + 1 + self.rnd.randint(0, 90)) % 100:02d}" + iban[4:]
            if not validators.iban(bad):
                return "iban", bad
            return "iban_hint", "n/a"
        if kind == 6:  # nine random digits under a non-identity key
            return self.pick("account_number", "tracking_number", "customer_number", "sku"), self.chars(
                string.digits, 9
            )
        if kind == 7:
            return self.pick("version", "api_version", "app_version"), ".".join(
                str(self.rnd.randint(0, 20)) for _ in range(3)
            )
        if kind == 8:
            return "created_at", f.iso8601()
        if kind == 9:
            return self.pick("name", "product_name", "title"), f.catch_phrase()
        if kind == 10:
            return "description", f.sentence(nb_words=10)
        if kind == 11:
            return self.pick("checksum", "sha256", "etag"), self.chars("0123456789abcdef", 64)
        if kind == 12:
            return self.pick("status", "state"), self.pick("PROCESSING", "SUCCEEDED", "requires_action", "ACTIVE")
        if kind == 13:
            return self.pick("amount", "quantity", "total"), self.rnd.randint(1, 10**6)
        if kind == 14:
            return self.pick("sequence_number", "batch_id"), self.chars("123456789", 1) + self.chars(string.digits, 10)
        return self.pick("url", "website", "callback_url"), f.url()


TYPE_GENERATORS: tuple[str, ...] = (
    "credit_card", "iban", "swift_bic", "aba_routing", "us_ssn", "us_itin", "uk_nino", "uk_nhs_number", "nl_bsn",
    "pl_pesel", "se_personnummer", "es_dni", "it_codice_fiscale", "de_steuer_id", "fr_insee", "email",
    "phone_number", "date_of_birth", "person_name", "postal_address", "password", "passport_number", "jwt",
    "pem_private_key", "aws_access_key_id", "aws_secret_access_key", "github_token", "slack_token",
    "google_api_key", "stripe_key", "generic_secret", "session_token", "azure_storage_connection_string",
    "azure_sas_token",
)  # fmt: skip


def generate(n_docs: int = 400, seed: int = 20240601) -> list[Doc]:
    """``n_docs`` labelled documents; the same seed gives the same corpus."""
    gen = _Gen(seed)
    docs: list[Doc] = []
    for i in range(n_docs):
        doc = Doc(body={})
        sections: dict[str, dict[str, object]] = {"customer": {}, "payment": {}, "meta": {}}
        # Every type appears regularly: rotate through them, plus random extras.
        chosen = [TYPE_GENERATORS[i % len(TYPE_GENERATORS)], *gen.rnd.sample(TYPE_GENERATORS, 2)]
        for type_id in chosen:
            make: Callable[[], tuple[str, str]] = getattr(gen, type_id)
            key, value = make()
            section = gen.rnd.choice(list(sections))
            if key in sections[section]:
                continue
            sections[section][key] = value
            doc.labels.add((type_id, f"$.{section}{_segment(key)}"))
        for _ in range(gen.rnd.randint(3, 6)):
            key, neg = gen.negative()
            section = gen.rnd.choice(list(sections))
            sections[section].setdefault(key, neg)
        # Sometimes the customers come as a list: path templates get [*].
        if gen.rnd.random() < 0.2:
            customer = sections.pop("customer")
            doc.body["customers"] = [customer]
            doc.labels = {(t, p.replace("$.customer", "$.customers[*]", 1)) for t, p in doc.labels}
        doc.body.update(sections)
        docs.append(doc)
    return docs


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def evaluate(classifier: Classifier, docs: list[Doc]) -> dict[str, Score]:
    """Per-type scores: a finding is a (type, path) pair per document."""
    scores: dict[str, Score] = {}
    for doc in docs:
        found = {(d.type, d.path) for d in classifier.classify_leaves(walk_json(doc.encode(), "response_body"))}
        for t, _ in found | doc.labels:
            scores.setdefault(t, Score())
        for item in found & doc.labels:
            scores[item[0]].tp += 1
        for item in found - doc.labels:
            scores[item[0]].fp += 1
        for item in doc.labels - found:
            scores[item[0]].fn += 1
    return dict(sorted(scores.items()))


def markdown_table(scores: dict[str, Score]) -> str:
    lines = ["| type | TP | FP | FN | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    for t, s in scores.items():
        lines.append(f"| {t} | {s.tp} | {s.fp} | {s.fn} | {s.precision:.3f} | {s.recall:.3f} |")
    return "\n".join(lines)
