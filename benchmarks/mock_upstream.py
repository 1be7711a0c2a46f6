"""Benchmark mock upstream: a raw asyncio protocol on uvloop with httptools' HTTP/1.1 parser.

It must never be the bottleneck, so it does no routing framework, no per-request JSON work
(answers are prebuilt and cached, see ``mock_formats``) and writes each answer with one
``transport.write`` unless told to write per event.

Routes (formats in ``mock_formats.FORMATS``):
  POST /v1/completions        OpenAI legacy completions, JSON or SSE (``stream_options.include_usage``)
  POST /v1/messages           Anthropic Messages, JSON or SSE (named events)
  POST /fail/<path>           503 with that format's error body, at once
  GET  /healthz               200

Streams are chunked (``Transfer-Encoding: chunked``), like the providers'. Write patterns:
  one   headers and every event in a single write (default)
  each  headers, then one write per event; with a delay the events are that far apart
The model name may choose per request (``-each``, ``stream-<N>x<MS>``; see ``mock_formats``).

``--processes N`` forks N processes that each bind the port with SO_REUSEPORT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import deque
from typing import cast

import httptools
import uvloop

from .mock_formats import FORMATS, Answer, BadRequest, Defaults, Format
from .procs import serve_forked

_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
)
_LAST_CHUNK = b"0\r\n\r\n"
_CLOSE = b"Connection: close\r\n"
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 503: b"Service Unavailable"}


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _plain(status: int, body: bytes, ctype: bytes, keep_alive: bool) -> bytes:
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        _REASONS[status],
        ctype,
        len(body),
        b"" if keep_alive else _CLOSE,
        body,
    )


class _Request:
    __slots__ = ("body", "keep_alive", "method", "url")

    def __init__(self, method: bytes, url: bytes, body: bytes, keep_alive: bool) -> None:
        self.method, self.url, self.body, self.keep_alive = method, url, body, keep_alive


class MockProtocol(asyncio.Protocol):
    """One connection. Requests are answered in order; a delayed stream holds the ones behind it."""

    def __init__(self, defaults: Defaults) -> None:
        self.defaults = defaults
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url: list[bytes] = []
        self.body: list[bytes] = []
        self.queue: deque[_Request] = deque()
        self.busy = False  # a delayed stream is being written
        self.timer: asyncio.TimerHandle | None = None

    # ---- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_plain(400, b"bad request", b"text/plain", False))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    # ---- parser callbacks
    def on_url(self, url: bytes) -> None:
        self.url.append(url)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        p = self.parser
        req = _Request(p.get_method(), b"".join(self.url), b"".join(self.body), p.should_keep_alive())
        self.url.clear()
        self.body.clear()
        self.queue.append(req)
        if not self.busy:
            self._drain_queue()

    # ---- answering
    def _drain_queue(self) -> None:
        while self.queue and not self.busy and self.transport is not None:
            self._answer(self.queue.popleft())

    def _answer(self, req: _Request) -> None:
        url = req.url.split(b"?", 1)[0]
        if url == b"/healthz":
            self._finish(_plain(200, b"ok", b"text/plain", req.keep_alive), req.keep_alive)
            return
        fail = url.startswith(b"/fail/")
        fmt: Format | None = FORMATS.get(url[5:] if fail else url)
        if fmt is None:
            self._finish(_plain(404, b"not found", b"text/plain", req.keep_alive), req.keep_alive)
            return
        if req.method != b"POST":
            self._finish(_plain(405, b"method not allowed", b"text/plain", req.keep_alive), req.keep_alive)
            return
        if fail:
            self._finish(_plain(503, fmt.error_body, b"application/json", req.keep_alive), req.keep_alive)
            return
        try:
            answer = fmt.answer(req.body, self.defaults)
        except BadRequest:
            self._finish(_plain(400, fmt.bad_body, b"application/json", req.keep_alive), req.keep_alive)
            return
        if answer.json is not None:
            self._finish(_plain(200, answer.json, b"application/json", req.keep_alive), req.keep_alive)
            return
        head = _SSE_HEAD + (b"" if req.keep_alive else _CLOSE) + b"\r\n"
        if not answer.each:
            self._finish(head + _chunk(b"".join(answer.events)) + _LAST_CHUNK, req.keep_alive)
            return
        self._write(head)
        if answer.delay_s <= 0:
            for ev in answer.events[:-1]:
                self._write(_chunk(ev))
            self._finish(_chunk(answer.events[-1]) + _LAST_CHUNK, req.keep_alive)
            return
        self.busy = True
        self._write(_chunk(answer.events[0]))
        self._next_event(answer, 1, req.keep_alive)

    def _next_event(self, answer: Answer, i: int, keep_alive: bool) -> None:
        # Timers rather than a coroutine per stream: 1,000 open streams stay cheap.
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(answer.delay_s, self._send_event, answer, i, keep_alive)

    def _send_event(self, answer: Answer, i: int, keep_alive: bool) -> None:
        self.timer = None
        if self.transport is None:
            return
        if i < len(answer.events) - 1:
            self._write(_chunk(answer.events[i]))
            self._next_event(answer, i + 1, keep_alive)
            return
        self.busy = False
        self._finish(_chunk(answer.events[i]) + _LAST_CHUNK, keep_alive)
        self._drain_queue()

    def _finish(self, data: bytes, keep_alive: bool) -> None:
        self._write(data)
        if not keep_alive:
            self._close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.queue.clear()


async def serve(host: str, port: int, defaults: Defaults) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Big backlog: 1,000 streams connect at once, and a dropped SYN would add a 1 s retransmit.
    server = await loop.create_server(lambda: MockProtocol(defaults), host, port, reuse_port=True, backlog=4096)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--events", type=int, default=20, help="content events per stream (default 20)")
    ap.add_argument("--write", choices=("one", "each"), default="one", help="stream write pattern (default one)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="delay between events; implies --write each")
    ap.add_argument("--processes", type=int, default=1, help="processes sharing the port with SO_REUSEPORT")
    args = ap.parse_args(argv)
    defaults = Defaults(args.events, args.write == "each" or args.delay_ms > 0, args.delay_ms / 1000)
    serve_forked(args.processes, lambda: uvloop.run(serve(args.host, args.port, defaults)))


if __name__ == "__main__":
    main()
