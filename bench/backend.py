"""A small JSON backend for the benchmarks (aiohttp + uvloop): ``python -m bench.backend PORT``."""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

# The item's id, price and owner follow the requested id, so the sensor sees varying values (as from
# a real API), not one body repeated: caches keyed by values must earn their hits.
ITEM = (
    '{"id": %(id)s, "name": "Widget", "price": %(id)s.5, "tags": ["a", "b"], '
    '"owner": {"id": %(id)s, "region": "eu-west"}, "description": "' + "x" * 300 + '"}'
)


async def item(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    item_id = raw if raw.isdigit() else "0"
    return web.Response(body=(ITEM % {"id": item_id}).encode(), content_type="application/json")


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
