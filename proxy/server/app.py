"""The aiohttp application: routes, with every answer in our error shape.

No middleware: each one is a coroutine frame that every resumption of a request walks through,
so the completions handler owns its errors and a catch-all route answers unknown paths (404)
and known paths with the wrong method (405 with Allow) in JSON.
"""

from __future__ import annotations

from aiohttp import web

from proxy.core.errors import ErrorCode, ErrorType, ProxyError
from proxy.server import handlers, knowledge_routes
from proxy.server.request_log import log_request
from proxy.server.state import SERVER, Server

COMPLETIONS = "/v2/router/completions"
CHAT = "/v2/router/chat/completions"


def make_app(server: Server, *, with_metrics: bool = True) -> web.Application:
    app = web.Application(client_max_size=server.runtime.config.server.max_body_bytes)
    app[SERVER] = server
    routes: dict[str, tuple[str, handlers.Handler]] = {
        COMPLETIONS: ("POST", handlers.completions),
        CHAT: ("POST", handlers.chat),
        # OpenAI's paths, so `OpenAI(base_url="http://host:8080/v1")` works as it is.
        "/v1/completions": ("POST", handlers.completions),
        "/v1/chat/completions": ("POST", handlers.chat),
        "/v1/models": ("GET", handlers.models),
        "/v2/router/models": ("GET", handlers.models),
        "/healthz": ("GET", handlers.healthz),
        "/readyz": ("GET", handlers.readyz),
    }
    if with_metrics:
        routes["/metrics"] = ("GET", handlers.metrics)
    for path, (method, handler) in routes.items():
        app.router.add_route(method, path, handler)
    knowledge_routes.add_routes(app)  # /v2/knowledge…: orq's knowledge API
    allowed = {path: "GET, HEAD" if method == "GET" else method for path, (method, _) in routes.items()}

    async def unrouted(request: web.Request) -> web.Response:
        methods = allowed.get(request.path)
        if methods is not None:
            err = ProxyError(405, f"Method Not Allowed: {request.method} {request.path}",
                             code=ErrorCode.invalid_request_body, headers={"Allow": methods})
        else:
            err = ProxyError(404, f"Not Found: {request.method} {request.path}", type=ErrorType.not_found,
                             code=ErrorCode.not_found)
        rid = handlers.request_id(request)
        log_request(server.logger, rid, None, err.status, request.path)  # every answer is in the request log
        return handlers.error_response(err, rid)

    app.router.add_route("*", "/{tail:.*}", unrouted)
    return app
