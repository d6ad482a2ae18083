"""The signature policy schema (``policies/signatures/*.yaml``): msgspec Structs, validated at load.

Kept apart from ``sensor.signatures`` so that the engine can be compiled with mypyc: a compiled
module turns class bodies into native classes, which msgspec's Struct metaclass does not allow.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Location = Literal["path", "query_name", "query_value", "header", "cookie", "body_key", "body_value", "user_agent"]
Severity = Literal["critical", "high", "medium", "low"]
Category = Literal[
    "sqli",
    "xss",
    "command_injection",
    "path_traversal",
    "rfi",
    "ssrf",
    "xxe",
    "nosqli",
    "ssti",
    "ldapi",
    "jndi",
    "crlf",
    "prototype_pollution",
    "deserialization",
    "scanner",
]
TransformName = Literal[
    "url_decode", "html_entity", "nfkc", "lowercase", "sql_comments", "compress_whitespace", "json_unescape", "base64"
]


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9]*-\d{3}$")]
    category: Category
    name: Annotated[str, msgspec.Meta(min_length=1)]
    severity: Severity
    paranoia: Annotated[int, msgspec.Meta(ge=1, le=4)]
    targets: Annotated[list[Location], msgspec.Meta(min_length=1)]
    pattern: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    owasp: Annotated[str, msgspec.Meta(pattern=r"^API(?:[1-9]|10):2023$")]
    mitre: Annotated[str, msgspec.Meta(pattern=r"^T\d{4}(?:\.\d{3})?$")]
    transforms: list[TransformName] = []
    headers: list[str] | None = None  # header names (any case) read when targets has "header"
    caseless: bool = True
    score: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None  # default: the severity's score
    description: str = ""


class ScoringSpec(msgspec.Struct, forbid_unknown_fields=True):
    severity_scores: dict[Severity, Annotated[int, msgspec.Meta(ge=0, le=100)]]
    thresholds: dict[Annotated[int, msgspec.Meta(ge=1, le=4)], Annotated[int, msgspec.Meta(ge=1)]]


class SignatureFile(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[RuleSpec] = []
    scoring: ScoringSpec | None = None


DEFAULT_SCORING = ScoringSpec(
    severity_scores={"critical": 5, "high": 4, "medium": 3, "low": 2},
    thresholds={1: 5, 2: 5, 3: 4, 4: 3},
)
