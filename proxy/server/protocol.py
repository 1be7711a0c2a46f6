"""HTTP/1.1 connections: protocol errors in our JSON shape, slow clients, and a connection cap.

aiohttp answers a malformed request (bad framing, a header over its limit, a bare CR or LF, a
method that is not a token) from `RequestHandler.handle_error` with a text/plain body that
echoes the raw line, and logs a traceback carrying that line — an `Authorization` value
included. Here that method answers our error shape and logs one JSON line naming only the
error's class and a fixed reason. The same handler bounds how long a started request head may
take (aiohttp's keep-alive timer only bounds idle connections) and refuses connections past
`server.max_connections`. The runner builds our Server, which builds these handlers.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, cast

from aiohttp import hdrs, web, web_server
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import PlainResource, UrlMappingMatchInfo

from proxy.config import ServerConfig
from proxy.core.errors import ErrorCode, ErrorType, ProxyError
from proxy.server.request_ids import new_request_id

# aiohttp's limits, chosen so the error tells a long request line (414) from a long header (431).
MAX_LINE_BYTES = 8190  # the request line
MAX_FIELD_BYTES = 8192  # one header line: "a header over 8 KB" is 431
MAX_HEADERS = 100


def max_connections(limits: ServerConfig) -> int:
    if limits.max_connections is not None:
        return limits.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, soft // 2)  # the other half: upstream connections, logs, the listening sockets


def classify(exc: BaseException | None, status: int) -> tuple[int, str]:
    """(status, reason) of a protocol error; the reason is fixed text, never the client's bytes."""
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_FIELD_BYTES,):
            return 431, f"a request header is longer than {MAX_FIELD_BYTES} bytes"
        return 414, f"the request line is longer than {MAX_LINE_BYTES} bytes"
    if isinstance(exc, BadHttpMethod):  # llhttp knows the registered methods only: FOO and G@T alike
        return 400, "unknown or malformed HTTP method"
    if isinstance(exc, BadHttpMessage):
        if "Too many headers" in exc.message:
            return 431, f"more than {MAX_HEADERS} request headers"
        return 400, "malformed HTTP request (framing, header syntax, or a bare CR/LF)"
    if status >= 500:
        return 500, "internal error while handling the request"
    return status, "malformed HTTP request"


def _raw_response(err: ProxyError, request_id: str) -> bytes:
    """A whole HTTP/1.1 response for a connection we answer without aiohttp's writer."""
    body = err.body()
    phrase = HTTPStatus(err.status).phrase
    return (f"HTTP/1.1 {err.status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nx-request-id: {request_id}\r\nConnection: close\r\n\r\n"
            ).encode() + body


class ProtocolHandler(RequestHandler):
    def __init__(self, manager: ProtocolServer, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._sy = manager
        self._head_timer: asyncio.TimerHandle | None = None

    # -- protocol errors ------------------------------------------------------------------------------
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        status, reason = classify(exc, status)
        rid = new_request_id()
        self._sy.log_protocol_error(status, reason, exc, request.remote, rid)
        if request.writer.output_size > 0:  # a response already started: only closing is left
            raise ConnectionError("response already started")
        if status >= 500:
            err = ProxyError(500, "Internal error; the request id is in the logs", type=ErrorType.internal,
                             code=ErrorCode.internal_error)
        else:
            err = ProxyError(status, f"Bad HTTP request: {reason}", code=ErrorCode.invalid_request_body)
        response = web.Response(status=err.status, body=err.body(), content_type="application/json",
                                headers={"x-request-id": rid})
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's other error paths: one line with the exception's class, never its text."""
        exc = kw.get("exc_info")
        self._sy.logger.error("connection error", error=type(exc).__name__ if isinstance(exc, BaseException)
                              else None, where=str(args[0]) if args else None)

    # -- slow request heads -----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        waiting = self._waiter is not None and not self._waiter.done()  # between requests
        if waiting and self._head_timer is None and data:
            self._head_timer = self._loop.call_later(self._sy.limits.header_timeout_seconds, self._head_late)
        super().data_received(data)
        if self._head_timer is not None and not (self._waiter is not None and not self._waiter.done()):
            self._head_timer.cancel()  # the head is complete: the request is being handled
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport is None or not (self._waiter is not None and not self._waiter.done()):
            return
        timeout = self._sy.limits.header_timeout_seconds
        rid = new_request_id()
        self._sy.log_protocol_error(408, f"request head not complete within {timeout:g} s", None,
                                    self._peer(), rid)
        err = ProxyError(408, f"The request head did not arrive within {timeout:g} s", type=ErrorType.timeout,
                         code=ErrorCode.request_timeout)
        self.transport.write(_raw_response(err, rid))
        self.force_close()

    def _peer(self) -> str | None:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) else None

    # -- the connection cap ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self._sy.connections) >= self._sy.max_connections:
            self._sy.refused(transport)
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)


class ProtocolServer(web_server.Server):
    """aiohttp's Server, building ProtocolHandlers."""

    def __init__(self, stock: web_server.Server, limits: ServerConfig, logger: Any) -> None:
        # aiohttp has no public hook for the protocol class: rebuild its Server with ours.
        super().__init__(stock.request_handler, request_factory=stock.request_factory,
                         handler_cancellation=stock.handler_cancellation, loop=stock._loop, **stock._kwargs)
        self.limits = limits
        self.logger = logger
        self.max_connections = max_connections(limits)
        self._refused = 0
        self._refused_logged = 0.0

    def __call__(self) -> RequestHandler:
        return ProtocolHandler(self, loop=self._loop, **self._kwargs)

    def log_protocol_error(self, status: int, reason: str, exc: BaseException | None, remote: str | None,
                           request_id: str) -> None:
        self.logger.warning("protocol error", status=status, reason=reason,
                            error=type(exc).__name__ if exc is not None else None, remote=remote,
                            request_id=request_id)

    def refused(self, transport: asyncio.BaseTransport) -> None:
        """Past max_connections: a 503 in our shape, then close; logged at most every 10 s."""
        err = ProxyError(503, f"Too many open connections (server.max_connections = {self.max_connections})",
                         type=ErrorType.upstream, code=ErrorCode.server_overloaded)
        stream = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        stream.write(_raw_response(err, new_request_id()))
        stream.close()
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= 10:
            self.logger.warning("connections refused: server.max_connections reached",
                                max_connections=self.max_connections, refused=self._refused)
            self._refused_logged = now
            self._refused = 0


Dispatch = Callable[[web.Request], Awaitable[web.StreamResponse]]


def direct_dispatch(app: web.Application, fallback: Dispatch) -> Dispatch:
    """The request handler aiohttp's server calls: a request for a fixed path (the API's routes,
    health, metrics) goes straight to its handler; anything else through the application.

    Application._handle is an `async def` around the handler, so it is one more frame that every
    resumption of a streaming handler walks through, and it resolves the route anew each time.
    Here each fixed route's match is resolved once (so `request.app` works as usual) and the
    handler's own coroutine is returned. A request with `Expect` (100-continue), with a query or
    escapes in its path, or for a method the route does not take goes the usual way, as does
    everything when the application has middlewares."""
    if app.middlewares:
        return fallback
    routes: dict[tuple[str, str], tuple[UrlMappingMatchInfo, Dispatch]] = {}
    for plain in app.router.resources():
        if not isinstance(plain, PlainResource):
            continue
        for route in plain:
            match = UrlMappingMatchInfo({}, route)
            match.add_app(app)
            match.freeze()
            routes[(route.method, plain.canonical)] = (match, route.handler)

    def dispatch(request: web.Request) -> Awaitable[web.StreamResponse]:
        found = routes.get((request.method, request.raw_path))
        if found is None or hdrs.EXPECT in request.headers:
            return fallback(request)
        match, handler = found
        request._match_info = match  # what Application._handle sets; read by `request.app`
        return handler(request)

    return dispatch


class Runner(web.AppRunner):
    """AppRunner whose server speaks through ProtocolHandler, with our limits."""

    def __init__(self, app: web.Application, limits: ServerConfig, logger: Any, **kwargs: Any) -> None:
        # lingering_time: after an early answer (413, 408) aiohttp reads what the client still sends
        # so it sees the answer; a trickling client must not hold the connection 10 s for that.
        super().__init__(app, keepalive_timeout=limits.idle_timeout_seconds, max_line_size=MAX_LINE_BYTES,
                         max_field_size=MAX_FIELD_BYTES, max_headers=MAX_HEADERS, lingering_time=1.0, **kwargs)
        self._limits = limits
        self._logger = logger

    async def _make_server(self) -> web_server.Server:
        server = ProtocolServer(await super()._make_server(), self._limits, self._logger)
        # Requests reach the handler as web.Request: the server's factory is the application's.
        stock = cast(Dispatch, server.request_handler)
        server.request_handler = cast(Any, direct_dispatch(self.app, stock))
        return server
