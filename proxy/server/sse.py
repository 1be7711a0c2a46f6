"""Relaying an answer to the client as Server-Sent Events (README, "Streaming").

Each write is awaited, so a slow reader slows the upstream read instead of growing a queue.
A failure after the first chunk becomes one in-band error event and no `[DONE]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import web

from proxy.api.surface import StreamRenderer, Surface
from proxy.core.errors import ProxyError
from proxy.core.model import Result
from proxy.core.sse import frame
from proxy.core.stream import UpstreamStream
from proxy.pipeline.call import Call
from proxy.server import drain

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}
DONE = b"data: [DONE]\n\n"


class EventStreamResponse(web.StreamResponse):
    """A StreamResponse whose head goes out with its first body write, in one send, rather than
    alone from `prepare()`: the relay prepares only once the first content is in hand, so
    nothing waits for it, and a stream whose upstream answered in one read leaves in one write.
    (aiohttp's own `Response` buffers its head the same way; versions before 3.12 ignore this.)"""

    _send_headers_immediately = False


class Frames(Protocol):
    """SSE frames ready to write, one batch at a time. `ended`: the batch just handed out was
    the last (the relay then sends it with the stream's end, in one write)."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @property
    def ended(self) -> bool: ...

    async def aclose(self) -> None: ...


class Rendered:
    """Canonical deltas from a provider stream, rendered by the surface as they arrive.

    An iterator class rather than an async generator: one frame less on the await chain that
    every upstream read resumes."""

    __slots__ = ("done", "renderer", "stream")

    def __init__(self, stream: UpstreamStream[Any], renderer: StreamRenderer) -> None:
        self.stream = stream
        self.renderer = renderer
        self.done = False  # the renderer's tail went out

    @property
    def ended(self) -> bool:
        return self.done

    def __aiter__(self) -> Rendered:
        self.stream.__aiter__()  # arms the cache's collection, as `async for` would
        return self

    async def __anext__(self) -> bytes:
        stream, renderer = self.stream, self.renderer
        while not self.done:
            try:
                deltas = await stream.__anext__()
            except StopAsyncIteration:
                self.done = True
                tail = renderer.finish()
                if tail:
                    return tail
                raise
            out = renderer.render(deltas)
            if stream.ended:  # the last batch: the renderer's tail goes with it
                self.done = True
                out += renderer.finish()
            if out:
                return out
        await _drained(stream)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _drained(stream: UpstreamStream[Any]) -> None:
    """Past its last batch, so that a complete stream reaches the cache (`on_complete`)."""
    try:
        while True:
            await stream.__anext__()
    except StopAsyncIteration:
        pass


class Replayed:
    """A whole answer in hand (a cache hit), as the surface frames it."""

    __slots__ = ("frames",)

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    @property
    def ended(self) -> bool:
        return not self.frames

    def __aiter__(self) -> Replayed:
        return self

    async def __anext__(self) -> bytes:
        if not self.frames:
            raise StopAsyncIteration
        return self.frames.pop(0)

    async def aclose(self) -> None:
        return None


def frames_of(outcome: Result | UpstreamStream[Any], surface: Surface, request: Any) -> Frames:
    if isinstance(outcome, Result):
        return Replayed(surface.replay(outcome, request))
    if outcome.passthrough == surface.wire:
        return outcome  # the declared pass-through: already in this surface's format
    return Rendered(outcome, surface.renderer(outcome.head, request))


async def _fail(response: web.StreamResponse, call: Call, err: ProxyError, before: bytes) -> None:
    """After the first chunk a failure can only be said in-band: one error event, no [DONE]."""
    call.log["stream_error"] = {"status": err.status, "code": err.code}
    await response.write(before + frame(err.body()))


async def relay(request: web.Request, call: Call, outcome: Result | UpstreamStream[Any],
                headers: dict[str, str]) -> web.StreamResponse:
    """The answer relayed; `call.log["client_gone"]` says the client closed before its end."""
    frames = frames_of(outcome, call.surface, call.request)
    response = EventStreamResponse(status=200, headers={**SSE_HEADERS, **headers})
    last = b""  # the final batch, held to go out with the end
    tail = b""  # what goes with the chunked terminator: no [DONE] after a failure
    try:
        await response.prepare(request)
        try:
            call.first_token_seconds = time.perf_counter() - call.started  # the first content is in hand
            call.stream_overhead = call.overhead_seconds()
            async for batch in frames:
                if frames.ended:  # the last batch goes with [DONE] and the chunked terminator: one send
                    last = batch
                else:
                    await response.write(batch)
            tail = last + DONE
        except ProxyError as err:
            await _fail(response, call, err, last)
        except asyncio.CancelledError:
            reason = drain.cancelled_by(request)
            if reason is None:
                raise  # the client went away: nobody to tell
            # The deadline or SIGTERM's grace ran out mid-stream: say so in-band, and no [DONE].
            await _fail(response, call, drain.cancellation_error(request, reason), last)
        finally:
            if isinstance(outcome, UpstreamStream):
                call.upstream_seconds += outcome.waited
                call.usage = outcome.usage or call.usage
            await frames.aclose()  # a client gone mid-write stops the upstream here too
        await response.write_eof(tail)
    except ConnectionResetError:
        # The client closed between two writes, before aiohttp's cancellation reached us: the
        # same disconnect (499), not a bug of ours (aiohttp raises ClientConnectionResetError).
        call.log["client_gone"] = True
    return response
