"""Pull the collector's imported spec templates into the sensor's router.

Polls ``GET /api/v1/specs/templates?api=NAME`` with ``If-None-Match``: an unchanged inventory costs a
304 and nothing else. New operations are loaded into the running ``Router`` (``load_openapi`` is
additive and keeps the learned inference state), so traffic maps to the spec's templates and names
from the next request on. Operations that disappear from the collector's answer (a spec re-imported
without them, or deleted) are removed from the router again, but only those this sync added: an
operation that also came from a ``--spec`` file stays.

A failed poll is logged and retried at the next interval; it never touches traffic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from apiward.logs import get_logger
from apiward.tasks import stop_tasks
from sensor.routing import Router

log = get_logger("sensor.spec_sync")
_TIMEOUT = aiohttp.ClientTimeout(total=30)
_MAX_BYTES = 16 * 1024 * 1024


def operations_document(operations: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A minimal OpenAPI document for ``Router.load_openapi`` from the collector's operation list
    (paths there already include the base path, so the document has none)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        method, path, name = op.get("method"), op.get("path"), op.get("name")
        if not isinstance(method, str) or not isinstance(path, str) or not path.startswith("/"):
            continue
        paths.setdefault(path, {})[method.lower()] = {"operationId": name} if isinstance(name, str) and name else {}
    return {"openapi": "3.1.0", "paths": paths}


class SpecSync:
    """Keeps one router in step with the collector's specs for one API."""

    def __init__(
        self,
        collector: str,
        token: str | None,
        api: str,
        router_of: Callable[[], Router],
        *,
        interval: float = 60.0,
    ) -> None:
        self.url = collector.rstrip("/") + "/api/v1/specs/templates"
        self.token = token
        self.api = api
        self.router_of = router_of  # () -> Router: the pipeline's current router
        self.interval = interval
        self.etag: str | None = None
        self.loaded_operations = 0
        self.removed_operations = 0
        self._owned: set[tuple[str, str]] = set()  # (METHOD, template) this sync added to the router
        self.polls = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    async def poll(self, session: aiohttp.ClientSession) -> bool:
        """One poll; True when new templates were loaded."""
        self.polls += 1
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.etag:
            headers["If-None-Match"] = self.etag
        async with session.get(self.url, params={"api": self.api}, headers=headers, timeout=_TIMEOUT) as resp:
            if resp.status == 304:
                return False
            if resp.status != 200:
                raise RuntimeError(f"collector answered {resp.status} for spec templates")
            body = await resp.content.read(_MAX_BYTES + 1)
            if len(body) > _MAX_BYTES:
                raise RuntimeError("spec templates answer is too large")
            data = _loads(body)
            etag = resp.headers.get("ETag")
        router = self.router_of()
        documents = [
            operations_document(item.get("operations") or [])
            for item in data.get("items", [])
            if isinstance(item, dict) and item.get("api") == self.api
        ]
        wanted = {(m.upper(), path) for doc in documents for path, ops in doc["paths"].items() for m in ops}
        for method, path in sorted(wanted - self._owned):
            if not router.has_operation(method, path):
                self._owned.add((method, path))  # ours to remove later; a --spec file's stays
        removed = 0
        for method, path in sorted(self._owned - wanted):
            removed += router.remove_operation(method, path)
            self._owned.discard((method, path))
        loaded = sum(router.load_openapi(doc, self.api) for doc in documents)
        self.etag = etag
        self.loaded_operations = loaded
        self.removed_operations += removed
        log.info("spec_templates_loaded", api=self.api, operations=loaded, removed=removed)
        return True

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await self.poll(session)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the collector may be away; try again next time
                    self.errors += 1
                    log.warning("spec_sync_failed", error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="spec-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_tasks([task])


def _loads(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    if not isinstance(data, dict):
        raise RuntimeError("spec templates answer is not a JSON object")
    return data


__all__ = ["SpecSync", "operations_document"]
