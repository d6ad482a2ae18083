"""A backend process for the hardening tests: ``python -m tests.hardening.backend PORT``.

- ``GET  /api/items/{id}``      small JSON (normal traffic)
- ``POST /api/items``           echo
- ``POST /upload``              streams the body, answers ``{"size": n, "sha256": hex}`` (nothing kept)
- ``GET  /blob?size=N``         N deterministic bytes (``blob_chunk`` repeated), streamed
- ``GET  /bomb``                a gzip bomb: ``Content-Encoding: gzip``, small on the wire, huge inflated
- ``GET  /stats``               requests seen per path, for "the backend saw nothing" checks
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ITEM = json.dumps({"id": 1, "name": "Widget", "price": 19.5, "email": "alice@example.com"}).encode()
CHUNK = 256 * 1024


def blob_chunk() -> bytes:
    return hashlib.sha256(b"seed").digest() * (CHUNK // 32)


def blob_sha256(size: int) -> str:
    """The digest of ``GET /blob?size=size`` computed without the network."""
    h, chunk, left = hashlib.sha256(), blob_chunk(), size
    while left > 0:
        h.update(chunk[: min(left, CHUNK)])
        left -= CHUNK
    return h.hexdigest()


def gzip_bomb(inflated: int) -> bytes:
    zeros = b"\0" * (1024 * 1024)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        for _ in range(inflated // len(zeros)):
            gz.write(zeros)
    return buf.getvalue()


BOMB_INFLATED = 256 * 1024 * 1024
_BOMB: list[bytes] = []
SEEN: Counter[str] = Counter()


@web.middleware
async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path != "/stats":
        SEEN[request.path] += 1
    return await handler(request)


async def item(request: web.Request) -> web.Response:
    return web.Response(body=ITEM, content_type="application/json")


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type=request.content_type)


async def upload(request: web.Request) -> web.Response:
    h, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return web.json_response({"size": size, "sha256": h.hexdigest()})


async def blob(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    resp = web.StreamResponse(headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
    await resp.prepare(request)
    chunk, left = blob_chunk(), size
    while left > 0:
        await resp.write(chunk[: min(left, CHUNK)])
        left -= CHUNK
    await resp.write_eof()
    return resp


async def bomb(request: web.Request) -> web.Response:
    if not _BOMB:
        _BOMB.append(gzip_bomb(BOMB_INFLATED))
    body = _BOMB[0]
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(dict(SEEN))


def main() -> None:
    import uvloop

    port = int(sys.argv[1])
    app = web.Application(
        middlewares=[count], client_max_size=1024 * 1024 * 1024, handler_args={"auto_decompress": False}
    )
    app.router.add_get("/api/items/{id}", item)
    app.router.add_post("/api/items", echo)
    app.router.add_post("/upload", upload)
    app.router.add_get("/blob", blob)
    app.router.add_get("/bomb", bomb)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
