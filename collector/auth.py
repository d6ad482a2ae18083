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
    ref: str = ""  # which configured token this is (a hash of its digest): dashboard sessions keep it


INSECURE_REF = "insecure-dev"


def token_ref(token: Token) -> str:
    """A stable reference to a configured token that reveals nothing usable (a hash of its SHA-256)."""
    return hashlib.sha256(b"apiward-token-ref\x00" + token.digest).hexdigest()[:32]


class Authenticator:
    def __init__(self, tokens: list[Token], insecure_dev: bool = False) -> None:
        self._tokens = [(t.digest, t) for t in tokens]
        self._insecure_dev = insecure_dev
        self._roles = {token_ref(t): t.role for t in tokens}

    def still_grants(self, ref: str, admin: bool) -> bool:
        """Whether the token a dashboard session was opened with is still configured with a role that
        covers the session (read, or admin for an admin session): rotating or removing a token ends
        its sessions, on every replica and across restarts."""
        if self._insecure_dev:
            return ref == INSECURE_REF
        role = self._roles.get(ref)
        if role is None or not role.grants(Role.READ):
            return False
        return role.grants(Role.ADMIN) or not admin

    def authenticate(self, header: str | None) -> Caller:
        """The caller for an ``Authorization`` header; 401 when missing or unknown."""
        if self._insecure_dev:
            return Caller(name="insecure-dev", role=None, ref=INSECURE_REF)
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
        return Caller(name=found.name, role=found.role, ref=token_ref(found))

    @staticmethod
    def authorize(caller: Caller, needed: Role | tuple[Role, ...]) -> None:
        """``needed`` is one role, or several any of which will do."""
        roles = needed if isinstance(needed, tuple) else (needed,)
        if caller.role is None or any(caller.role.grants(r) for r in roles):
            return
        names = " or ".join(r.value for r in roles)
        raise ApiError(403, f"this route needs the {names} role; the token has {caller.role.value}")
