"""Bearer tokens and roles.

Tokens are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured token
(no early exit), so neither the match nor its position leaks through timing. Tokens never reach logs.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from collector.problems import ApiError
from collector.settings import Role, Token

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="apiward"'}


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # recorded as "who" on changes; never the secret
    role: Role | None  # None: insecure dev mode, every role


class Authenticator:
    def __init__(self, tokens: list[Token], insecure_dev: bool = False) -> None:
        self._tokens = [(t.digest, t) for t in tokens]
        self._insecure_dev = insecure_dev

    def authenticate(self, header: str | None) -> Caller:
        """The caller for an ``Authorization`` header; 401 when missing or unknown."""
        if self._insecure_dev:
            return Caller(name="insecure-dev", role=None)
        if not header:
            raise ApiError(401, "missing bearer token", headers=_CHALLENGE)
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise ApiError(401, "Authorization must be 'Bearer <token>'", headers=_CHALLENGE)
        digest = hashlib.sha256(secret.encode()).digest()
        found: Token | None = None
        for known, token in self._tokens:
            if hmac.compare_digest(known, digest):
                found = token
        if found is None:
            raise ApiError(401, "unknown token", headers=_CHALLENGE)
        return Caller(name=found.name, role=found.role)

    @staticmethod
    def authorize(caller: Caller, needed: Role | tuple[Role, ...]) -> None:
        """``needed`` is one role, or several any of which will do."""
        roles = needed if isinstance(needed, tuple) else (needed,)
        if caller.role is None or any(caller.role.grants(r) for r in roles):
            return
        names = " or ".join(r.value for r in roles)
        raise ApiError(403, f"this route needs the {names} role; the token has {caller.role.value}")
