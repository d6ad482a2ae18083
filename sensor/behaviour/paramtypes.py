"""The type of a parameter value, for ``API_UnseenParamType``.

Cheap checks (str methods) come before regexes: most values are short ids and numbers. Types form a
small lattice: a parameter that has carried free text accepts anything scalar; hex accepts digits
(a random hex id is all digits one time in ~2,000 at 16 characters, which must not alert); float
accepts int; base64 accepts hex and int. ``covered(mask, t)`` is the test the engine uses.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["TYPE_BITS", "TYPE_NAMES", "covered", "value_type"]

TYPE_NAMES: Final = ("int", "float", "bool", "uuid", "email", "date", "hex", "base64", "text", "object", "array")
TYPE_BITS: Final = {name: 1 << i for i, name in enumerate(TYPE_NAMES)}

_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EMAIL: Final = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
_FLOAT: Final = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_HEX: Final = re.compile(r"(?:0x)?[0-9a-fA-F]{8,}")
_B64: Final = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")

# type -> types whose presence makes it unremarkable
_COVERED_BY: Final = {
    "int": TYPE_BITS["float"] | TYPE_BITS["hex"] | TYPE_BITS["base64"] | TYPE_BITS["text"],
    "float": TYPE_BITS["text"],
    "bool": TYPE_BITS["text"],
    "uuid": TYPE_BITS["text"],
    "email": TYPE_BITS["text"],
    "date": TYPE_BITS["text"],
    "hex": TYPE_BITS["base64"] | TYPE_BITS["text"],
    "base64": TYPE_BITS["text"],
    "text": 0,
    "object": 0,
    "array": 0,
}
_COVER_MASK: Final = {name: TYPE_BITS[name] | cover for name, cover in _COVERED_BY.items()}


def value_type(value: str) -> str:
    v = value.strip()
    if not v:
        return "text"
    first = v[0]
    if v.isdigit() or (first == "-" and v[1:].isdigit()):
        return "int"
    low = v.lower()
    if low in ("true", "false"):
        return "bool"
    if first in "{[" and v[-1] in "}]":
        return "object" if first == "{" else "array"
    n = len(v)
    if n == 36 and _UUID.fullmatch(v):
        return "uuid"
    if "@" in v and _EMAIL.fullmatch(v):
        return "email"
    if n >= 10 and first.isdigit() and _DATE.fullmatch(v):
        return "date"
    if _FLOAT.fullmatch(v):
        return "float"
    if _HEX.fullmatch(v):
        return "hex"
    if _B64.fullmatch(v) and any(c.isdigit() for c in v) and not v.isalpha():
        return "base64"
    return "text"


def covered(mask: int, type_name: str) -> bool:
    """True when a parameter that has carried the types in ``mask`` makes ``type_name`` normal."""
    return bool(mask & _COVER_MASK[type_name])
