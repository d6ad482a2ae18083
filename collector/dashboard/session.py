"""Dashboard sessions: a random id in an httpOnly cookie, mapped here to who logged in.

The cookie never holds the bearer token (a stolen cookie dies with the session, and logging out
really ends it). Sessions live in this process only, bounded in number and in time: after
``max_sessions`` the least recently used is dropped, a session idle for ``idle_seconds`` or older than
``absolute_seconds`` is gone. A restart logs everyone out, which is acceptable for an operator tool;
collectors behind a load balancer need sticky sessions (noted in the README).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "apiward_session"


def _digest(session_id: str) -> str:
    # Keyed by a digest: a memory dump or debug print of the table shows no usable cookie values.
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(slots=True)
class Session:
    name: str  # the token's name (recorded on alert status changes), never the secret
    admin: bool
    csrf: str = field(repr=False)
    created: float
    last_seen: float

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf.encode(), (given or "").encode())


class SessionStore:
    def __init__(
        self,
        *,
        max_sessions: int = 10_000,
        idle_seconds: float = 8 * 3600,
        absolute_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items: OrderedDict[str, Session] = OrderedDict()
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds
        self._clock = clock

    def __len__(self) -> int:
        return len(self._items)

    def create(self, name: str, admin: bool) -> tuple[str, Session]:
        """A new session (always a fresh id: no session fixation); returns (cookie value, session)."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(name=name, admin=admin, csrf=secrets.token_urlsafe(32), created=now, last_seen=now)
        self._items[_digest(session_id)] = session
        while len(self._items) > self.max_sessions:
            self._items.popitem(last=False)  # least recently used
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        key = _digest(session_id)
        session = self._items.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self.idle_seconds or now - session.created > self.absolute_seconds:
            del self._items[key]
            return None
        session.last_seen = now
        self._items.move_to_end(key)
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._items.pop(_digest(session_id), None)


__all__ = ["COOKIE", "Session", "SessionStore"]
