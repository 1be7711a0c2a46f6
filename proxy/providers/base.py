"""What every provider connector is, and the stream object connectors hand back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from proxy.api.errors import ErrorCode, ErrorType, ProxyError, upstream_error
from proxy.api.response import Completion
from proxy.config import ProviderConfig
from proxy.pipeline.call import Call, Target


class UpstreamError(ProxyError):
    """A failed attempt. `status` drives retry/fallback; 408 stands for a timeout (DESIGN.md)."""

    def __init__(self, base: ProxyError, *, kind: str = "status", retry_after: float | None = None) -> None:
        super().__init__(base.status, base.message, type=base.type, param=base.param, code=base.code)
        self.kind = kind  # "status" | "timeout" | "connection" | "protocol"
        self.retry_after = retry_after


def status_error(status: int, message: str, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(upstream_error(status, message), retry_after=retry_after)


def connection_error(target: Target, detail: str) -> UpstreamError:
    return UpstreamError(
        ProxyError(502, f"{target.label}: cannot reach provider ({detail})", type=ErrorType.upstream,
                   code=ErrorCode.provider_error),
        kind="connection",
    )


def protocol_error(target: Target, detail: str) -> UpstreamError:
    return UpstreamError(
        ProxyError(502, f"{target.label}: invalid response from provider ({detail})", type=ErrorType.upstream,
                   code=ErrorCode.provider_error),
        kind="protocol",
    )


def timeout_error(target: Target, seconds: float) -> UpstreamError:
    return UpstreamError(
        ProxyError(408, f"{target.label}: no response within {seconds * 1000:.0f} ms", type=ErrorType.timeout,
                   code=ErrorCode.provider_timeout),
        kind="timeout",
    )


def _has_content(chunk: Completion) -> bool:
    return any(choice.text for choice in chunk.choices) or chunk.usage is not None


class ChunkStream:
    """A provider stream whose first content chunk has already arrived.

    `open` reads ahead until that chunk, so every failure before it (status, timeout,
    connection error, an error event) surfaces as an exception while retry and fallback can
    still act; afterwards chunks are relayed one at a time, never queued.
    """

    __slots__ = ("_chunks", "_ahead", "_close", "_call", "closed", "on_complete")

    def __init__(self, chunks: AsyncIterator[Completion], ahead: list[Completion],
                 close: Callable[[], Awaitable[None] | None], call: Call) -> None:
        self._chunks = chunks
        self._ahead = ahead
        self._close = close
        self._call = call
        self.closed = False
        # Called with every chunk once the upstream finished cleanly (the cache stores it then);
        # never for a stream that failed or that the client left.
        self.on_complete: Callable[[list[Completion]], None] | None = None

    @classmethod
    async def open(cls, chunks: AsyncIterator[Completion], close: Callable[[], Awaitable[None] | None],
                   call: Call) -> ChunkStream:
        ahead: list[Completion] = []
        try:
            async for chunk in chunks:
                ahead.append(chunk)
                if _has_content(chunk):
                    break
        except BaseException:
            await _maybe_await(close())
            raise
        return cls(chunks, ahead, close, call)

    async def __aiter__(self) -> AsyncIterator[Completion]:
        seen: list[Completion] | None = [] if self.on_complete is not None else None
        try:
            for chunk in self._ahead:
                if seen is not None:
                    seen.append(chunk)
                yield chunk
            self._ahead = []
            call = self._call
            while True:
                waited = time.perf_counter()
                try:
                    chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    call.upstream_seconds += time.perf_counter() - waited
                if seen is not None:
                    seen.append(chunk)
                yield chunk
            if seen is not None and self.on_complete is not None:
                self.on_complete(seen)
        finally:
            await self.aclose()

    @classmethod
    def replay(cls, chunks: list[Completion], call: Call) -> ChunkStream:
        """A stream of chunks already in hand (a cache hit)."""
        return cls(_empty(), chunks, _no_close, call)

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await _maybe_await(self._close())


async def _empty() -> AsyncIterator[Completion]:
    return
    yield  # an async generator that yields nothing


def _no_close() -> None:
    return None


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result


Result = Completion | ChunkStream


class Connector:
    """One provider. Subclasses map our request to the provider's wire format and back."""

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config

    async def start(self) -> None:
        """Open pooled connections; called inside the running event loop."""

    async def close(self) -> None:
        """Release pooled connections."""

    async def complete(self, call: Call, target: Target) -> Completion:
        raise NotImplementedError

    async def stream(self, call: Call, target: Target) -> ChunkStream:
        raise NotImplementedError
