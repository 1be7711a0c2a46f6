"""The stream a connector hands back, and the small context every connector call gets.

A stream is opened only once its first content is in hand: every failure before it (status,
timeout, connection error, an error event) surfaces as an exception from `open`, while retry
and fallback can still act. Afterwards batches are relayed one at a time, never queued.

A batch is either canonical deltas, or — a declared pass-through — bytes already framed in the
wire format of the surface that asked (`passthrough` names it), when the upstream speaks that
format already and rewriting it byte by byte is cheaper than translating it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, NamedTuple, Protocol, TypeVar

from proxy.core.model import Delta, Result, StreamHead, Usage, assemble

Batch = TypeVar("Batch", bytes, list[Delta])


class CallContext(NamedTuple):
    """What a connector may know of the request beyond its canonical body."""

    request_id: str
    deadline: float  # time.perf_counter() value after which the whole request is over
    wire: str  # the surface's wire format, for connectors that can pass it through


class _HasUsage(Protocol):
    usage: Usage | None


Close = Callable[[], Awaitable[None] | None]


class UpstreamStream(Generic[Batch]):
    __slots__ = ("_ahead", "_batches", "_close", "_collect", "_usage", "closed", "head", "on_complete",
                 "passthrough", "seen", "usage_source", "waited")

    def __init__(self, batches: AsyncIterator[Batch], ahead: list[Batch], close: Close, head: StreamHead,
                 passthrough: str | None, collect: Callable[[StreamHead, list[Batch]], Result | None]) -> None:
        self._batches: AsyncIterator[Batch] = batches
        self._ahead: list[Batch] = ahead
        self._close = close
        self._collect: Callable[[StreamHead, list[Batch]], Result | None] = collect
        self.head = head
        self.passthrough = passthrough
        self.closed = False
        self.waited = 0.0  # seconds spent awaiting the provider: not the proxy's overhead
        # Called with the whole answer once the upstream finished cleanly (the cache stores it
        # then); never for a stream that failed or that the client left.
        self.on_complete: Callable[[Result], None] | None = None
        self.seen: list[Batch] | None = None
        # Where a pass-through stream's usage is read from (its translator); delta streams
        # carry theirs in a delta.
        self.usage_source: _HasUsage | None = None
        self._usage: Usage | None = None

    @property
    def ended(self) -> bool:
        """The source has said its last word: the batch just handed out was the final one, so
        the relay can send it together with the stream's end."""
        return not self._ahead and getattr(self._batches, "finished", False)

    @property
    def usage(self) -> Usage | None:
        return self.usage_source.usage if self.usage_source is not None else self._usage

    @classmethod
    async def open(cls, batches: AsyncIterator[Batch], close: Close, head: Callable[[], StreamHead],
                   passthrough: str | None = None,
                   collect: Callable[[StreamHead, list[Batch]], Result | None] | None = None
                   ) -> UpstreamStream[Batch]:
        """Wait for the first batch; `head` is read after it, once the provider said who it is."""
        try:
            first = await batches.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await _maybe_await(close())
            raise
        # The wait for the first batch is the attempt's, timed by the retry stage around it.
        return cls(batches, [first] if first else [], close, head(), passthrough,
                   collect or _assemble_deltas)  # type: ignore[arg-type]

    def __aiter__(self) -> UpstreamStream[Batch]:
        if self.on_complete is not None:
            self.seen = []
        return self

    async def __anext__(self) -> Batch:
        if self._ahead:
            batch = self._ahead.pop(0)
        else:
            waited = time.perf_counter()
            try:
                batch = await self._batches.__anext__()
            except StopAsyncIteration:
                if self.seen is not None and self.on_complete is not None:
                    result = self._collect(self.head, self.seen)
                    self.seen = None
                    if result is not None:
                        self.on_complete(result)
                raise
            finally:
                self.waited += time.perf_counter() - waited
        if self.seen is not None:
            self.seen.append(batch)
        if self.passthrough is None:
            for delta in batch:
                if isinstance(delta, Delta) and delta.usage is not None:
                    self._usage = delta.usage
        return batch

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await _maybe_await(self._close())


def _assemble_deltas(head: StreamHead, batches: list[list[Delta]]) -> Result:
    return assemble(head, [delta for batch in batches for delta in batch])


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result
