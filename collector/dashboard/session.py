"""Dashboard sessions: a random id in an httpOnly cookie, mapped in the database to who logged in.

The cookie never holds the bearer token (a stolen cookie dies with the session, and logging out
really ends it). Sessions live in the ``dashboard_sessions`` table, so every collector replica behind
a load balancer knows every login and a restart logs nobody out; the table is keyed by the SHA-256 of
the cookie value, so a database dump shows no usable cookie. Bounded in number and in time: beyond
``max_sessions`` the least recently used go, a session idle for ``idle_seconds`` or older than
``absolute_seconds`` is gone (and deleted by the next login). ``last_seen`` is written at most once per
``touch_seconds`` per session, so page views do not each cost a database write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.store import Store
from collector.store import schema as t

COOKIE = "apiward_session"
_MAX_NAME = 200


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(slots=True)
class Session:
    name: str  # the token's name (recorded on alert status changes), never the secret
    admin: bool
    csrf: str = field(repr=False)
    token_ref: str  # which configured token opened it (collector.auth.token_ref), to check it still exists
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
        touch_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,  # wall clock: replicas compare each other's times
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds
        self.touch_seconds = min(touch_seconds, idle_seconds / 4)
        self._clock = clock

    async def count(self, store: Store) -> int:
        async with store.engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(t.dashboard_sessions)) or 0)

    async def create(self, store: Store, name: str, admin: bool, token_ref: str) -> tuple[str, Session]:
        """A new session (always a fresh id: no session fixation); returns (cookie value, session).
        Expired sessions are deleted here, and the least recently used beyond ``max_sessions``."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(name=name[:_MAX_NAME], admin=admin, csrf=secrets.token_urlsafe(32), token_ref=token_ref,
                          created=now, last_seen=now)  # fmt: skip
        s = t.dashboard_sessions.c

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(t.dashboard_sessions.delete().where(
                (s.last_seen < now - self.idle_seconds) | (s.created_at < now - self.absolute_seconds)
            ))  # fmt: skip
            await conn.execute(t.dashboard_sessions.insert().values(
                id_digest=_digest(session_id), name=session.name, admin=admin, csrf=session.csrf,
                token_ref=token_ref, created_at=now, last_seen=now,
            ))  # fmt: skip
            total = int(await conn.scalar(sa.select(sa.func.count()).select_from(t.dashboard_sessions)) or 0)
            if total > self.max_sessions:  # the least recently used go
                keep = sa.select(s.id_digest).order_by(s.last_seen.desc(), s.created_at.desc())
                keep = keep.limit(self.max_sessions)
                await conn.execute(t.dashboard_sessions.delete().where(s.id_digest.not_in(keep.scalar_subquery())))

        await store.write(work)
        return session_id, session

    async def get(self, store: Store, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        key = _digest(session_id)
        s = t.dashboard_sessions.c
        async with store.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.dashboard_sessions).where(s.id_digest == key))).first()
        if row is None:
            return None
        now = self._clock()
        if now - row.last_seen > self.idle_seconds or now - row.created_at > self.absolute_seconds:
            await self._delete(store, key)
            return None
        if now - row.last_seen >= self.touch_seconds:
            touch = t.dashboard_sessions.update().where(s.id_digest == key).values(last_seen=now)
            await store.write(lambda conn: conn.execute(touch))
        return Session(name=row.name, admin=bool(row.admin), csrf=row.csrf, token_ref=row.token_ref,
                       created=row.created_at, last_seen=now)

    async def drop(self, store: Store, session_id: str | None) -> None:
        if session_id and len(session_id) <= 128:
            await self._delete(store, _digest(session_id))

    @staticmethod
    async def _delete(store: Store, key: str) -> None:
        gone = t.dashboard_sessions.delete().where(t.dashboard_sessions.c.id_digest == key)
        await store.write(lambda conn: conn.execute(gone))


__all__ = ["COOKIE", "Session", "SessionStore"]
