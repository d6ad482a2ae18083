"""The fast path's listener: an aiohttp site whose connections start on ``FastFront``.

Its own module, outside the compiled set (``setup.py``): it subclasses aiohttp's ``BaseSite``, which
has ``__slots__``, and mypyc cannot compile a subclass of such a Python class. The fast path itself
(``sensor/fastpath.py``) is compiled.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp import web

from sensor.fastpath import FastFront, _Client


class FastSite(web.BaseSite):
    """A listener whose connections start on the fast path (``FastFront``) and fall back to the
    runner's aiohttp server; stopping it lets requests in flight finish (bounded by STOP_GRACE)."""

    __slots__ = ("_client", "_host", "_port", "_sock", "_state", "front")

    def __init__(self, runner: web.BaseRunner, state: Any, host: str, port: int,
                 sock: socket.socket | None = None, *, client: type[_Client] | None = None) -> None:
        super().__init__(runner)
        self._host, self._port, self._sock = host, port, sock
        self.front: FastFront | None = None
        self._state = state
        self._client = client

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port} (fast path)"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        self.front = FastFront(self._state, server, loop, self._client)
        if self._sock is not None:
            self._server = await loop.create_server(self.front.protocol, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                self.front.protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()  # no new connections
        if self.front is not None:
            await self.front.stop()
        await super().stop()
