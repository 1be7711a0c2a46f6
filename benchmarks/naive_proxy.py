"""Naive pass-through proxy: the reference target. No parsing, no auth, no routing.

POST /v2/router/completions -> POST {upstream}/completions with the same body;
the response is relayed as-is, streams chunk by chunk. ``--processes N`` forks N processes
sharing the port with SO_REUSEPORT, the reference for Switchyard's ``--workers N``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

from .procs import serve_forked

SESSION = web.AppKey("session", aiohttp.ClientSession)


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    url = upstream.rstrip("/") + "/completions"

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        # One pooled session, no connection cap, so the pool never queues requests.
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        yield
        await app[SESSION].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with app[SESSION].post(url, data=body, headers={"Content-Type": "application/json"}) as up:
            ctype = up.headers.get("Content-Type", "application/json")
            if not ctype.startswith("text/event-stream"):
                return web.Response(status=up.status, body=await up.read(), headers={"Content-Type": ctype})
            resp = web.StreamResponse(status=up.status, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v2/router/completions", relay)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000/v1")
    ap.add_argument("--processes", type=int, default=1, help="processes sharing the port with SO_REUSEPORT")
    args = ap.parse_args()
    serve_forked(args.processes, lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    web.run_app(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
        reuse_port=True,
        loop=uvloop.new_event_loop(),
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
