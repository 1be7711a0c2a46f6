"""Relaying a ChunkStream to the client as Server-Sent Events (DESIGN.md, "Streaming").

Each write is awaited, so a slow reader slows the upstream read instead of growing a queue.
A failure after the first chunk becomes one in-band error event and no `[DONE]`.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from proxy.api.errors import ProxyError
from proxy.pipeline.call import Call
from proxy.providers.base import ChunkStream
from proxy.providers.sse import frame
from proxy.server import drain

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}
DONE = b"data: [DONE]\n\n"


async def _fail(response: web.StreamResponse, call: Call, err: ProxyError) -> None:
    """After the first chunk a failure can only be said in-band: one error event, no [DONE]."""
    call.log["stream_error"] = {"status": err.status, "code": err.code}
    await response.write(frame(err.body()))




async def relay(request: web.Request, call: Call, stream: ChunkStream, headers: dict[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    try:
        call.first_token_seconds = time.perf_counter() - call.started  # the first content is in hand
        async for frames in stream:
            await response.write(frames)
        await response.write(DONE)
    except ProxyError as err:
        await _fail(response, call, err)
    except asyncio.CancelledError:
        reason = drain.cancelled_by(request)
        if reason is None:
            raise  # the client went away: nobody to tell
        # The deadline or SIGTERM's grace ran out mid-stream: say so in-band, and no [DONE].
        await _fail(response, call, drain.cancellation_error(request, reason))
    finally:
        await stream.aclose()
    await response.write_eof()
    return response
