"""A small JSON backend for the benchmarks (aiohttp + uvloop): ``python -m bench.backend PORT``."""

from __future__ import annotations

import json
import sys

import uvloop
from aiohttp import web

ITEM = json.dumps(
    {"id": 1, "name": "Widget", "price": 19.5, "tags": ["a", "b"], "owner": {"id": 7, "region": "eu-west"},
     "description": "x" * 300}
).encode()


async def item(request: web.Request) -> web.Response:
    return web.Response(body=ITEM, content_type="application/json")


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type)


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_get("/api/items/{id}", item)
    app.router.add_post("/api/items", echo)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
