"""The I/O every JSON-over-HTTP provider shares: one pooled session, bounded reads, and SSE
streams with an idle timeout. A provider module adds only its URL, headers and translation.

Bounds (README, "Providers"): an answer larger than `max_response_bytes`, or an SSE event larger
than `max_event_bytes`, is a 502 naming the provider; a stream silent for
`stream_idle_timeout_seconds` is cut as a timeout.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sized
from email.utils import parsedate_to_datetime
from typing import Generic, Protocol, TypeVar

import aiohttp

from proxy.core.errors import (
    UpstreamError,
    connection_error,
    protocol_error,
    timeout_error,
)
from proxy.core.sse import EventTooLarge, SSEParser
from proxy.core.stream import CallContext
from proxy.core.target import Target
from proxy.providers.base import Connector

Batch_co = TypeVar("Batch_co", covariant=True)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a provider asks us to wait: `retry-after-ms`, else `retry-after` in seconds or as
    an HTTP date; None when it says nothing usable."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _answer_too_large(target: Target, limit: int) -> UpstreamError:
    return protocol_error(target.label, f"answer larger than {limit} bytes")


def _expect_event_stream(response: aiohttp.ClientResponse, target: Target) -> None:
    """A stream's answer must be an event stream; anything else is closed and a 502."""
    if not response.content_type.startswith("text/event-stream"):
        response.close()
        raise protocol_error(target.label, f"expected text/event-stream, got {response.content_type}")


class HTTPConnector(Connector):
    session: aiohttp.ClientSession
    _stream_timeout: aiohttp.ClientTimeout

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate us to the provider (never logged)."""
        return {}

    def error_from(self, target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        """The provider's error answer as our error: its message and machine-readable type kept."""
        raise NotImplementedError

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_connections, ttl_dns_cache=300),
            headers={"Content-Type": "application/json", **self.auth_headers(), **self.config.headers},
            # Per-attempt deadlines come from the pipeline's timeout stage, not from here.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_seconds),
            auto_decompress=True,
            # A provider's cookies are never sent back: every tenant shares this session, and
            # filtering a jar on every request costs more than the rest of the request's headers.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_seconds,
                                                     sock_read=self.config.stream_idle_timeout_seconds)

    async def close(self) -> None:
        await self.session.close()

    async def post(self, url: str, body: bytes, target: Target, ctx: CallContext, *,
                   stream: bool = False, headers: Mapping[str, str] | None = None) -> aiohttp.ClientResponse:
        """POST and return a successful response; an error status is raised as the provider's
        error. For a stream, every read (the first included) waits at most the idle timeout."""
        request_headers = {"X-Request-ID": ctx.request_id, **headers} if headers else {"X-Request-ID": ctx.request_id}
        try:
            if stream:  # else the session's timeout applies (its default is aiohttp's sentinel, not None)
                response = await self.session.post(url, data=body, headers=request_headers,
                                                   timeout=self._stream_timeout)
            else:
                response = await self.session.post(url, data=body, headers=request_headers)
        except aiohttp.ServerTimeoutError:
            raise timeout_error(target.label, self.config.stream_idle_timeout_seconds) from None
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target.label, type(err).__name__) from None
        if response.status >= 400:
            try:
                raw = await self.read(response, target)
            except UpstreamError:
                raw = b""
            raise self.error_from(target, response.status, raw, response.headers)
        return response

    async def read(self, response: aiohttp.ClientResponse, target: Target) -> bytes:
        """The whole body, refused past `max_response_bytes` (a 502), released either way."""
        limit = self.config.max_response_bytes
        try:
            if response.content_length is not None and response.content_length > limit:
                raise _answer_too_large(target, limit)
            content = response.content
            if content.is_eof():  # it all came with the head (a small answer): no read to await
                whole = content.read_nowait()
                if len(whole) > limit:
                    raise _answer_too_large(target, limit)
                return whole
            body = bytearray()
            async for data in content.iter_any():
                body += data
                if len(body) > limit:
                    raise _answer_too_large(target, limit)
            return bytes(body)
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target.label, type(err).__name__) from None
        finally:
            response.release()

    async def events(self, response: aiohttp.ClientResponse, target: Target) -> AsyncIterator[list[bytes]]:
        """The `data` of each SSE event, a list per upstream read (empty lists are skipped).
        Ends when the upstream closes the stream; a cut or a silence past the idle timeout
        raises, as does an event past `max_event_bytes`."""
        _expect_event_stream(response, target)
        parser = SSEParser(self.config.max_event_bytes)
        try:
            async for data in response.content.iter_any():
                events = list(parser.feed(data))
                if events:
                    yield events
            tail = list(parser.close())
            if tail:
                yield tail
        except STREAM_FAILURES as err:
            raise self.stream_failure(target, err) from None
        finally:
            response.close()

    def read_loop(self, response: aiohttp.ClientResponse, decoder: StreamDecoder[Batch_co],
                  target: Target, end: str = "[DONE]") -> ReadLoop[Batch_co]:
        """The stream's batches off `response` (ReadLoop), once it is an event stream at all.
        `end` names the event that ends the stream, for the error when it never comes."""
        _expect_event_stream(response, target)
        return ReadLoop(self, response, decoder, target, end)

    def stream_failure(self, target: Target, err: BaseException) -> UpstreamError:
        """A stream that broke while being read, as the failure it is."""
        if isinstance(err, EventTooLarge):
            return protocol_error(target.label, str(err))
        if isinstance(err, aiohttp.ServerTimeoutError):
            return timeout_error(target.label, self.config.stream_idle_timeout_seconds)
        return connection_error(target.label, f"stream cut: {type(err).__name__}")


# What reading a stream may raise that stream_failure turns into an UpstreamError.
STREAM_FAILURES = (EventTooLarge, aiohttp.ClientError, OSError)


class StreamDecoder(Protocol[Batch_co]):
    """A stream decoder: fed bytes (raw upstream reads, SSE framing included, for ReadLoop; or
    one SSE event's data at a time, behind SSEBytes), it makes batches to take."""

    @property
    def content_seen(self) -> bool: ...  # a batch may go out: before it, a failure can still fall back

    @property
    def finished(self) -> bool: ...  # the upstream said the stream is over ([DONE], message_stop)

    @property
    def output(self) -> Sized: ...

    def feed(self, data: bytes) -> None: ...

    def take(self) -> Batch_co: ...


class SSEBytes(Generic[Batch_co]):
    """A decoder fed one event's data at a time, fed raw reads instead: the SSE framing is
    parsed here, and each event's data passed on."""

    __slots__ = ("decoder", "parser")

    def __init__(self, decoder: StreamDecoder[Batch_co], limit: int) -> None:
        self.decoder = decoder
        self.parser = SSEParser(limit)

    @property
    def content_seen(self) -> bool:
        return self.decoder.content_seen

    @property
    def finished(self) -> bool:
        return self.decoder.finished

    @property
    def output(self) -> Sized:
        return self.decoder.output

    def feed(self, data: bytes) -> None:
        decoder = self.decoder
        for event in self.parser.feed(data):
            decoder.feed(event)

    def take(self) -> Batch_co:
        return self.decoder.take()


class ReadLoop(Generic[Batch_co]):
    """A stream's batches straight off the response: each `__anext__` reads, feeds the decoder
    and hands out what it made once content has been seen.

    A class rather than an async generator over aiohttp's iterator: every frame on the await
    chain is resumed again at each upstream read, and this is one frame where those were two
    (docs/architecture.md, "What a request costs"). `finished` lets the relay send the last batch with the stream's end.
    """

    __slots__ = ("_connector", "_error", "_read", "decoder", "end", "target")

    def __init__(self, connector: HTTPConnector, response: aiohttp.ClientResponse, decoder: StreamDecoder[Batch_co],
                 target: Target, end: str = "[DONE]") -> None:
        self._connector = connector
        self.end = end
        self._read = response.content.readany
        self._error: BaseException | None = None  # raised at the next read, after the batch before it
        self.decoder = decoder
        self.target = target

    @property
    def finished(self) -> bool:
        return self.decoder.finished and self._error is None

    def __aiter__(self) -> ReadLoop[Batch_co]:
        return self

    async def __anext__(self) -> Batch_co:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        decoder = self.decoder
        if decoder.finished:
            raise StopAsyncIteration
        while True:
            try:
                data = await self._read()
            except STREAM_FAILURES as err:
                raise self._connector.stream_failure(self.target, err) from None
            if not data:
                raise protocol_error(self.target.label, f"stream ended without {self.end}")
            try:
                decoder.feed(data)
            except Exception as err:  # noqa: BLE001 - raised now or at the next read, never swallowed
                failure = self._connector.stream_failure(self.target, err) if isinstance(err, EventTooLarge) else err
                if decoder.content_seen and decoder.output:  # what came before the failure goes out first
                    self._error = failure
                    return decoder.take()
                raise failure from None
            if decoder.output and (decoder.content_seen or decoder.finished):
                return decoder.take()
            if decoder.finished:
                raise StopAsyncIteration
