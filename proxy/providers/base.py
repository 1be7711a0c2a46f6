"""What every provider connector is, and the stream object connectors hand back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from proxy.api.errors import ErrorCode, ErrorType, ProxyError
from proxy.api.response import Completion
from proxy.config import ProviderConfig
from proxy.pipeline.call import Call, Target


class UpstreamError(ProxyError):
    """A failed attempt. `status` drives retry/fallback; 408 stands for a timeout (DESIGN.md)."""

    def __init__(self, base: ProxyError, *, kind: str = "status", retry_after: float | None = None) -> None:
        super().__init__(base.status, base.message, type=base.type, param=base.param, code=base.code)
        self.kind = kind  # "status" | "timeout" | "connection" | "protocol"
        self.retry_after = retry_after


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


class ChunkStream:
    """A provider stream whose first content has already arrived, as SSE frames to write.

    Connectors yield nothing before the first content, and `open` waits for that first batch,
    so every failure before it (status, timeout, connection error, an error event) surfaces as
    an exception while retry and fallback can still act; afterwards batches are relayed one
    at a time, never queued. A plain async iterator, not a generator: one frame less per batch.
    """

    __slots__ = ("_ahead", "_call", "_close", "_frames", "closed", "on_complete", "seen")

    def __init__(self, frames: AsyncIterator[bytes], ahead: list[bytes],
                 close: Callable[[], Awaitable[None] | None], call: Call) -> None:
        self._frames = frames
        self._ahead = ahead
        self._close = close
        self._call = call
        self.closed = False
        # Called with every frame once the upstream finished cleanly (the cache stores it then);
        # never for a stream that failed or that the client left.
        self.on_complete: Callable[[list[bytes]], None] | None = None
        self.seen: list[bytes] | None = None

    @classmethod
    async def open(cls, frames: AsyncIterator[bytes], close: Callable[[], Awaitable[None] | None],
                   call: Call) -> ChunkStream:
        try:
            first = await frames.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await _maybe_await(close())
            raise
        return cls(frames, [first] if first else [], close, call)

    @classmethod
    def replay(cls, frames: list[bytes], call: Call) -> ChunkStream:
        """A stream of frames already in hand (a cache hit)."""
        return cls(_empty(), list(frames), _no_close, call)

    def __aiter__(self) -> ChunkStream:
        if self.on_complete is not None:
            self.seen = []
        return self

    async def __anext__(self) -> bytes:
        if self._ahead:
            batch = self._ahead.pop(0)
        else:
            waited = time.perf_counter()
            try:
                batch = await self._frames.__anext__()
            except StopAsyncIteration:
                if self.seen is not None and self.on_complete is not None:
                    self.on_complete(self.seen)
                    self.seen = None
                raise
            finally:
                self._call.upstream_seconds += time.perf_counter() - waited
        if self.seen is not None:
            self.seen.append(batch)
        return batch

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await _maybe_await(self._close())


async def _empty() -> AsyncIterator[bytes]:
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
