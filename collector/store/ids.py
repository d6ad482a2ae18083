"""Stable ids: content hashes, so every collector (and every run) agrees on them."""

from __future__ import annotations

import hashlib


def _digest(*parts: str) -> str:
    # NUL cannot appear in the parts as they arrive over JSON from a sensor route, so the join is
    # unambiguous; 24 hex chars (96 bits) keep collisions out of reach for any real inventory.
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


def api_id(api: str) -> str:
    return _digest("api", api)


def endpoint_id(api: str, method: str, path: str) -> str:
    return _digest("endpoint", api, method.upper(), path)


def alert_id(
    type_: str, api: str, method: str, path: str, *, client_ip: str, principal: str, generation: int = 0
) -> str:
    """Generation 0 is a group's first alert; a group that went quiet longer than the grouping window
    opens generation 1, 2, ... Every collector counts the same generations, so ids still agree."""
    parts = ("alert", type_, api, method.upper(), path, client_ip, principal)
    return _digest(*parts) if generation == 0 else _digest(*parts, str(generation))


def finding_id(type_: str, endpoint_id: str) -> str:
    return _digest("finding", type_, endpoint_id)
