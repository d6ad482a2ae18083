"""The baseline: a minimal aiohttp pass-through proxy (no analysis, no streaming, no hygiene).

It is what "an aiohttp reverse proxy" costs at its simplest, so the sensor's overhead can be read as a
ratio to it, measured in the same run. ``python -m bench.baseline_proxy LISTEN_PORT UPSTREAM_URL``
"""

from __future__ import annotations

import sys

import aiohttp
import uvloop
from aiohttp import web

HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(upstream, auto_decompress=False)
        yield
        await app[SESSION].close()

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with request.app[SESSION].request(
            request.method, request.rel_url, headers=headers, data=body or None
        ) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
            return web.Response(status=resp.status, body=data, headers=out)

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
