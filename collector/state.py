"""Typed application state (``web.AppKey``), shared by the app factory and the handlers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from collector.auth import Authenticator, Caller
from collector.metrics import CollectorMetrics
from collector.problems import ApiError
from collector.recommendations import Recommendation
from collector.settings import CollectorSettings
from collector.store import Store


@dataclass(slots=True)
class StoreSlot:
    """Holds the store once ``cleanup_ctx`` opened it (app state is frozen by then, the slot is not)."""

    store: Store | None = None


SETTINGS = web.AppKey("settings", CollectorSettings)
STORE = web.AppKey("store", StoreSlot)
METRICS = web.AppKey("metrics", CollectorMetrics)
AUTH = web.AppKey("auth", Authenticator)
OPENAPI = web.AppKey("openapi", bytes)
RECOMMENDATIONS = web.AppKey("recommendations", list[Recommendation])
CALLER = web.RequestKey("caller", Caller)  # set by the auth middleware on protected routes


def store_of(app: web.Application) -> Store:
    store = app[STORE].store
    if store is None:
        raise ApiError(503, "the database is not open yet")
    return store
