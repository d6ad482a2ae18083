"""The data types policy schema (``policies/datatypes.yaml``): msgspec Structs, strict and fast.

Kept apart from ``sensor.classify`` so that the classifier can be compiled with mypyc: a compiled
module turns class bodies into native classes, which msgspec's Struct metaclass does not allow.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

Category = Literal["credential", "financial", "identity", "personal", "network", "health"]
CATEGORIES: Final = ("credential", "financial", "identity", "personal", "network", "health")


class PatternSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One way a type shows in a value. ``regex`` is searched in the value (Hyperscan syntax: no
    look-arounds or back-references unless ``key_required``, whose patterns run in Python only).
    ``validator`` overrides the type's. ``key_required``: report only under a hinted key."""

    regex: str
    key_required: bool = False
    validator: str | None = None
    caseless: bool = False


class DataTypeSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    name: str
    category: Category
    patterns: list[PatternSpec]
    enabled: bool = True
    validator: str | None = None
    keys: list[str] = msgspec.field(default_factory=list)  # key-name hints ("card_number", "pan")
    exclude_keys: list[str] = msgspec.field(default_factory=list)  # keys under which it never is
    suppressed_by: list[str] = msgspec.field(default_factory=list)  # more specific types, same value
    locations: list[str] | None = None  # restrict to these locations (default: all)
    description: str = ""


class DatatypesFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    datatypes: list[DataTypeSpec]
