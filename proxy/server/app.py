"""The aiohttp application: routes and the middleware that keeps every answer in our error shape."""

from __future__ import annotations

from aiohttp import web

from proxy.api.errors import ErrorCode, ErrorType, ProxyError
from proxy.server import handlers
from proxy.server.state import SERVER, Server

_HTTP_ERRORS: dict[int, tuple[ErrorType, ErrorCode]] = {
    404: (ErrorType.not_found, ErrorCode.not_found),
    405: (ErrorType.invalid_request, ErrorCode.invalid_request_body),
    413: (ErrorType.invalid_request, ErrorCode.payload_too_large),
}


@web.middleware
async def json_errors(request: web.Request, handler: handlers.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind, code = _HTTP_ERRORS.get(exc.status, (ErrorType.invalid_request, ErrorCode.invalid_request_body))
        message = f"{exc.reason}: {request.method} {request.path}"
        # A 405 must say what is allowed (RFC 9110); aiohttp's exception carries the header.
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return handlers.error_response(ProxyError(exc.status, message, type=kind, code=code, headers=headers),
                                       handlers.request_id(request))
    except Exception:
        # A bug of ours: the client gets a JSON 500 with its request id, the log gets the traceback.
        rid = handlers.request_id(request)
        request.app[SERVER].logger.exception("unhandled error", request_id=rid, path=request.path)
        return handlers.error_response(
            ProxyError(500, "Internal error; the request id is in the logs", type=ErrorType.internal,
                       code=ErrorCode.internal_error),
            rid,
        )


def make_app(server: Server, *, with_metrics: bool = True) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=server.runtime.config.server.max_body_bytes)
    app[SERVER] = server
    app.router.add_post("/v2/router/completions", handlers.completions)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    if with_metrics:
        app.router.add_get("/metrics", handlers.metrics)
    return app
