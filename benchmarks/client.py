"""A raw HTTP/1.1 client connection for the load generator: asyncio protocol + httptools.

Cheap on purpose (a prebuilt request, no header dicts, no stream reader) so that on a small
machine the generator costs a fraction of what the proxy under test costs, and the figures
say what the proxy does rather than what the generator can push.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import httptools

now = time.perf_counter


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Exchange:
    """What one request/response produced."""

    __slots__ = ("body", "end", "error", "header_value", "status", "tail", "ttfb")

    def __init__(self) -> None:
        self.status = 0
        self.ttfb: float | None = None  # absolute time of the first body bytes
        self.end = 0.0
        self.tail = b""  # last bytes of the body (streams: to find ``[DONE]``)
        self.body: list[bytes] = []  # whole body (non-stream only)
        self.header_value: bytes | None = None
        self.error: str | None = None


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, stream: bool, count_header: bytes | None, on_event: Callable[[float, int], None]) -> None:
        self.stream = stream
        self.count_header = count_header  # lower-case header name whose value is recorded
        self.on_event = on_event  # (time, n) for every body piece of a stream holding n ``data:`` events
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.ex = Exchange()
        self.carry = b""
        self.keep_alive = True
        self.open_cb: Callable[[int], None] | None = None  # +1 when a stream's headers arrive, -1 at its end

    # ---- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"parse_error:{type(exc).__name__}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("connection_lost")

    def _fail(self, why: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.ex.error = why
            self.waiter.set_result(None)
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    # ---- parser
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.count_header is not None and name.lower() == self.count_header:
            self.ex.header_value = value

    def on_headers_complete(self) -> None:
        self.ex.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.stream and self.open_cb is not None:
            self.open_cb(1)

    def on_body(self, body: bytes) -> None:
        t = now()
        ex = self.ex
        if ex.ttfb is None:
            ex.ttfb = t
        if self.stream:
            # b"data:" cannot overlap itself, so carrying 4 bytes never counts an event twice.
            n = (self.carry + body).count(b"data:")
            if n:
                self.on_event(t, n)
            self.carry = body[-4:] if len(body) >= 4 else (self.carry + body)[-4:]
            ex.tail = (ex.tail + body)[-32:]
        else:
            ex.body.append(body)

    def on_message_complete(self) -> None:
        self.ex.end = now()
        if self.stream and self.open_cb is not None:
            self.open_cb(-1)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # ---- use
    @property
    def usable(self) -> bool:
        return self.transport is not None and self.keep_alive

    async def exchange(self, request: bytes, timeout: float) -> Exchange:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.ex = Exchange()
        self.carry = b""
        self.waiter = loop.create_future()
        timer = loop.call_later(timeout, self._fail, "timeout")
        self.transport.write(request)
        try:
            await self.waiter
        finally:
            timer.cancel()
        ex = self.ex
        if ex.error is not None and self.stream and ex.status and self.open_cb is not None:
            self.open_cb(-1)  # headers came, the end never did
        return ex

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def connect(
    host: str,
    port: int,
    stream: bool,
    count_header: bytes | None,
    on_event: Callable[[float, int], None],
    open_cb: Callable[[int], None] | None,
) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(stream, count_header, on_event), host, port)
    conn.open_cb = open_cb
    return conn
