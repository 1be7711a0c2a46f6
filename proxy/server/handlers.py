"""HTTP handlers. The completions handler is the request's whole life: authenticate, decode,
route, run the pipeline, answer (JSON or SSE), then count and log it once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from proxy.api import chat as chat_surface
from proxy.api import completions as completions_surface
from proxy.api.surface import Surface
from proxy.core.errors import ErrorCode, ErrorType, ProxyError
from proxy.core.model import Result
from proxy.limits.service import HEADERS as LIMIT_HEADERS
from proxy.pipeline.call import Call
from proxy.pipeline.routing import resolve_route
from proxy.providers.llamacpp.process import managed_servers
from proxy.server import drain, sse
from proxy.server.models import model_list
from proxy.server.request_ids import new_request_id
from proxy.server.request_log import log_request
from proxy.server.state import SERVER

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_id(request: web.Request) -> str:
    incoming = request.headers.get("X-Request-ID")
    if incoming and _REQUEST_ID.match(incoming):
        return incoming
    return new_request_id()


def error_response(err: ProxyError, rid: str) -> web.Response:
    return web.Response(status=err.status, body=err.body(), content_type="application/json",
                        headers={"x-request-id": rid, **err.headers})


def _too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"Request body is larger than {limit} bytes", code=ErrorCode.payload_too_large)


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole body within `timeout` (a client trickling it would hold a connection forever),
    decompressed as its Content-Encoding says; every failure is the client's 4xx."""
    try:
        content = request.content
        if content.is_eof():  # all of it arrived with the head: no timer to arm, no read to await
            body = content.read_nowait()
            if len(body) > limit:
                raise _too_large(limit)
            return body
        async with asyncio.timeout(timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    except TimeoutError:
        raise ProxyError(408, f"The request body did not arrive within {timeout:g} s", type=ErrorType.timeout,
                         code=ErrorCode.request_timeout, headers={"Connection": "close"}) from None
    except (RequestPayloadError, HttpProcessingError) as err:  # bad gzip/deflate/br, broken chunking
        encoding = request.headers.get("Content-Encoding", "")
        what = f"is not valid {encoding}" if encoding else "could not be read"
        raise ProxyError(400, f"The request body {what} ({type(err).__name__})",
                         code=ErrorCode.invalid_request_body, headers={"Connection": "close"}) from None


def _result_headers(call: Call) -> dict[str, str]:
    overhead_ms = call.overhead_seconds() * 1000
    headers = {
        "x-request-id": call.request_id,
        "x-switchyard-attempts": str(len(call.attempts)),
        "x-switchyard-overhead-ms": f"{overhead_ms:.3f}",
    }
    if call.served is not None:
        headers["x-switchyard-model"] = call.served.label
    if call.cache_status is not None:
        headers["x-switchyard-cache"] = call.cache_status
    headers.update(call.log.get(LIMIT_HEADERS, ()))  # a limited key's x-ratelimit-* on every answer
    return headers


async def models(request: web.Request) -> web.Response:
    """The models the calling key may use, in OpenAI's list shape."""
    rid = request_id(request)
    runtime = request.app[SERVER].runtime
    try:
        key = runtime.keys.authenticate(request.headers.get("Authorization"))
    except ProxyError as err:
        return error_response(err, rid)
    return web.Response(body=model_list(runtime.config, key), content_type="application/json",
                        headers={"x-request-id": rid})


async def handle(request: web.Request, surface: Surface) -> web.StreamResponse:
    """The request lifecycle, the same for every surface."""
    server = request.app[SERVER]
    runtime = server.runtime  # a reload swaps it; this request keeps the one it started with
    limits = runtime.config.server
    tracker = server.tracker
    task = tracker.enter(runtime, limits.max_request_seconds) if tracker is not None else None
    rid = request_id(request)
    call: Call | None = None
    status = 500
    counted = False  # in the in-flight gauges once the body says whether it streams
    try:
        key = runtime.keys.authenticate(request.headers.get("Authorization"))
        length = request.content_length
        if length is not None and length > limits.max_body_bytes:
            raise _too_large(limits.max_body_bytes)
        body = await read_body(request, limits.max_body_bytes, limits.body_timeout_seconds)
        decoded, extras = surface.decode(body)
        server.metrics.request_started(stream=decoded.stream)
        counted = True
        call = Call(rid, decoded, surface.to_canonical(decoded, extras), surface, key=key)
        call.deadline = call.started + limits.max_request_seconds
        call.route = resolve_route(decoded, runtime.resolve)
        result = await runtime.pipeline(call)
        if call.stream:
            status = 200
            response = await sse.relay(request, call, result, _result_headers(call))
            if "stream_error" in call.log:
                status = call.log["stream_error"]["status"]
            if call.log.get("client_gone"):
                status = 499  # as when the disconnect cancels the handler
            return response
        assert isinstance(result, Result)  # a stream is only opened for a streaming request
        call.usage = result.usage
        status = 200
        return web.Response(body=surface.render(result), content_type="application/json",
                            headers=_result_headers(call))
    except ProxyError as err:
        status = err.status
        response = error_response(err, rid)
        if call is not None and call.attempts:  # what was tried, as on a success
            response.headers["x-switchyard-attempts"] = str(len(call.attempts))
        if call is not None:
            response.headers.update(call.log.get(LIMIT_HEADERS, ()))
        return response
    except asyncio.CancelledError:
        reason = drain.cancelled_by(request)
        if reason is None:
            status = 499  # the client went away; nginx's name for it
            raise
        cancelled = drain.cancellation_error(request, reason)  # 504 past the deadline, 503 drained
        status = cancelled.status
        return error_response(cancelled, rid)
    except Exception:
        # A bug of ours: the client gets a JSON 500 with its request id, the log the traceback.
        server.logger.exception("unhandled error", request_id=rid, path=request.path)
        return error_response(ProxyError(500, "Internal error; the request id is in the logs",
                                         type=ErrorType.internal, code=ErrorCode.internal_error), rid)
    finally:
        # Per-key usage and cost, and the release of the key's concurrency slot, on every path.
        settling = runtime.limiter.finish(call, status) if call is not None else None
        if tracker is not None:
            tracker.leave(task)
        server.metrics.request_done(call, status, counted, surface.name)
        log_request(server.logger, rid, call, status, request.path)
        if settling is not None:  # last: a second cancellation skips only this wait
            await settling


# Partials rather than wrapper coroutines: each frame on the handler's await chain is walked again
# at every resumption (every upstream read of a stream), so the surface is bound, not wrapped.
completions: Handler = partial(handle, surface=completions_surface.SURFACE)
chat: Handler = partial(handle, surface=chat_surface.SURFACE)


async def healthz(request: web.Request) -> web.Response:
    body: dict[str, object] = {"status": "ok"}
    managed = managed_servers()
    if managed:  # model servers this process runs (type llamacpp): pid, up, restarts, memory
        body["managed"] = managed
    return web.json_response(body, headers={"x-request-id": request_id(request)})


async def readyz(request: web.Request) -> web.Response:
    headers = {"x-request-id": request_id(request)}
    if request.app[SERVER].draining:
        return web.json_response({"status": "draining"}, status=503, headers=headers)
    return web.json_response({"status": "ready"}, headers=headers)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[SERVER].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type, "x-request-id": request_id(request)})
