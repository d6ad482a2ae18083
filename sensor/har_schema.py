"""The outer shape of a HAR document, for splitting it into its entries in one decoding pass.

Its own module, not in ``setup.py``'s compiled list: msgspec cannot introspect classes that mypyc
compiled (as for ``classify_policy.py`` and ``signature_policy.py``). Only ``log.entries`` is read;
every other member is skipped unparsed, and each entry stays raw JSON (``msgspec.Raw``, a slice of
the file's bytes) until replay decodes it on its turn.
"""

from __future__ import annotations

import msgspec


class HarLog(msgspec.Struct):
    entries: list[msgspec.Raw]


class HarDocument(msgspec.Struct):
    log: HarLog
