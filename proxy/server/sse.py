"""Relaying a ChunkStream to the client as Server-Sent Events (DESIGN.md, "Streaming").

Each write is awaited, so a slow reader slows the upstream read instead of growing a queue.
A failure after the first chunk becomes one in-band error event and no `[DONE]`.
"""

from __future__ import annotations

import time

from aiohttp import web

from proxy.api.errors import ProxyError
from proxy.api.response import encoder
from proxy.pipeline.call import Call
from proxy.providers.base import ChunkStream

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}
DONE = b"data: [DONE]\n\n"


def event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


async def relay(request: web.Request, call: Call, stream: ChunkStream, headers: dict[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    encode = encoder.encode
    try:
        async for chunk in stream:
            if call.first_token_seconds is None:
                call.first_token_seconds = time.perf_counter() - call.started
            if chunk.usage is not None:
                call.usage = chunk.usage
            await response.write(event(encode(chunk)))
        await response.write(DONE)
    except ProxyError as err:
        call.log["stream_error"] = {"status": err.status, "code": err.code}
        await response.write(event(err.body()))
    finally:
        await stream.aclose()
    await response.write_eof()
    return response
