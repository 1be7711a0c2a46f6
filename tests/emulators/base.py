"""What every loopback provider emulator shares.

An aiohttp server on its own event loop in a daemon thread, so synchronous pytest code can
drive it; per-model queues of scripted replies; a record of every request; disconnect
detection; and a stream writer that can delay, re-slice or cut the byte stream. Each
provider module adds only its own routes, request checks and wire format.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

from aiohttp import web

# Sleeps poll the socket this often, so a vanished client is noticed within ~50 ms.
POLL_S = 0.05


@dataclass
class Fault:
    """The transport-level part of a scripted reply, the same for every provider.

    A "chunk" is one content-carrying unit of the provider's stream (an OpenAI chunk,
    an Anthropic ``content_block_delta``, a Gemini response object).
    """

    status: int = 200
    error_body: dict | None = None  # replaces the provider's default error body
    raw_body: bytes | None = None  # sent verbatim instead of any well-formed answer
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the response headers
    chunk_delay_s: float = 0.0  # between stream writes
    cut_after_chunks: int | None = None  # abort the socket after this many chunks
    error_event_after_chunks: int | None = None  # in-band error after this many chunks
    split_at: list[int] | None = None  # re-slice the stream's bytes at these offsets


@dataclass
class Recorded:
    """One request as received; header names are lower-cased."""

    path: str
    method: str
    headers: dict[str, str]
    body: dict | None
    model: str | None
    received_at: float
    query: dict[str, str] = field(default_factory=dict)


def dumps(obj: Any) -> bytes:
    # Compact and raw UTF-8 like the real APIs, so multi-byte chars appear in the byte stream.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def sse(data: bytes, event: str | None = None, eol: bytes = b"\n") -> bytes:
    """One server-sent event: an optional ``event:`` line, one ``data:`` line, a blank line."""
    head = b"event: " + event.encode() + eol if event else b""
    return head + b"data: " + data + eol + eol


def pieces(text: str, n: int) -> list[str]:
    # Split by characters, never bytes, so each JSON chunk holds whole code points.
    n = max(1, n)
    return [text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(n)]


_TOKEN = re.compile(r"\s*\S+")


def tokens(text: str) -> list[str]:
    """The emulators' tokenizer: a word with its leading whitespace is one token."""
    return _TOKEN.findall(text)


def generate(text: str, max_tokens: int | None, stops: list[str]) -> tuple[str, str, str | None]:
    """Deterministic decoding of `text`: (output, "end" | "length" | "stop_sequence", matched stop).

    Decoding halts at whichever comes first: the earliest stop sequence (not included in
    the output) or the token limit.
    """
    hits = [(text.find(s), s) for s in stops if s and s in text]
    cut, stop = min(hits) if hits else (len(text), None)
    words = tokens(text[:cut])
    if max_tokens is not None and len(words) > max_tokens:
        return "".join(words[:max_tokens]), "length", None
    if stop is not None:
        return text[:cut], "stop_sequence", stop
    return text, "end", None


async def sleep_polling(request: web.Request, seconds: float) -> None:
    # Poll the socket while sleeping: a backstop should cancellation not reach us.
    deadline = time.monotonic() + seconds
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client went away")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, POLL_S))


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> web.Response:
    # bytes go out verbatim: that is how Fault.raw_body sends a garbage body
    body = obj if isinstance(obj, bytes) else dumps(obj)
    resp = web.Response(status=status, body=body, content_type="application/json")
    resp.headers.update(headers or {})
    return resp


R = TypeVar("R", bound=Fault)


class Emulator(Generic[R]):
    """Scriptable loopback server; subclasses set `reply_type` and add routes."""

    reply_type: type[R]
    name = "emulator"

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()  # guards the state shared with the test thread
        self._scripts: dict[str, list[R]] = {}
        self._records: list[Recorded] = []
        self._disconnects = 0
        self._disconnected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._stopping = False
        self._start_error: BaseException | None = None

    # ---- lifecycle (test thread) ----
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} emulator already started")
        ready = threading.Event()
        self._stopping, self._start_error, self._port = False, None, 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"{self.name}-emulator", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or self._start_error is not None or not self._port:
            raise RuntimeError(f"{self.name} emulator failed to start") from self._start_error

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        # Handlers that shutdown cancels are not client disconnects.
        self._stopping = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # ---- scripting and inspection (test thread) ----
    def script(self, model: str, *replies: R) -> None:
        """Replace `model`'s queue; the last reply left in it repeats forever."""
        with self._lock:
            if replies:
                self._scripts[model] = list(replies)
            else:
                self._scripts.pop(model, None)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._records.clear()
            self._disconnects = 0
            self._disconnected.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._records)

    @property
    def disconnects(self) -> int:
        with self._lock:
            return self._disconnects

    def wait_for_disconnect(self, timeout: float) -> bool:
        return self._disconnected.wait(timeout)

    # ---- server thread ----
    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except OSError as exc:  # e.g. a bind error: hand it to start()
            self._start_error = exc
        finally:
            ready.set()  # never leave start() waiting, whatever happened
        try:
            if self._start_error is None:
                loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        self.add_routes(app)
        # handler_cancellation: a client vanishing mid-sleep cancels the handler at
        # once; a short shutdown_timeout keeps stop() from waiting on slow streams.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.2
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]

    def _note_disconnect(self) -> None:
        if self._stopping:
            return
        with self._lock:
            self._disconnects += 1
        self._disconnected.set()

    async def record(self, request: web.Request, model: str | None = None) -> dict | None:
        """Record the request; return its JSON object body, or None if it has none.

        `model` is for APIs that name it in the path; otherwise the body's ``model``.
        """
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        if model is None and body is not None and isinstance(body.get("model"), str):
            model = body["model"]
        rec = Recorded(
            path=request.path,
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            model=model,
            received_at=time.monotonic(),
            query=dict(request.query),
        )
        with self._lock:
            self._records.append(rec)
        return body

    def next_reply(self, model: str) -> R:
        with self._lock:
            queue = self._scripts.get(model)
            if not queue:
                return self.reply_type()
            return queue.pop(0) if len(queue) > 1 else queue[0]

    async def guarded(self, work: Awaitable[web.StreamResponse]) -> web.StreamResponse:
        """Run a handler's reply phase, counting a vanished client as a disconnect."""
        try:
            return await work
        except asyncio.CancelledError:  # handler_cancellation: the client went away
            self._note_disconnect()
            raise
        except ConnectionError:  # a write or a sleep found the socket gone
            self._note_disconnect()
            # Never reaches the client; aiohttp swallows the failed write quietly,
            # where raising would log a spurious "Error handling request".
            return web.Response(status=499)

    async def send_stream(
        self,
        request: web.Request,
        reply: Fault,
        events: list[bytes],
        cut: bool,
        headers: dict[str, str] | None = None,
        content_type: str = "text/event-stream",
    ) -> web.StreamResponse:
        """Write `events` one HTTP chunk each; `cut` aborts the socket after the last."""
        if reply.split_at is not None:  # re-slice the whole byte stream at the offsets
            blob = b"".join(events)
            inner = sorted(o for o in set(reply.split_at) if 0 < o < len(blob))
            events = [blob[a:b] for a, b in itertools.pairwise([0, *inner, len(blob)])]
        resp = web.StreamResponse(status=reply.status)
        resp.content_type = content_type
        resp.charset = "utf-8"
        resp.headers["cache-control"] = "no-cache"
        resp.headers.update(headers or {})
        resp.headers.update(reply.headers)  # last, so a script may override any header
        await resp.prepare(request)
        for n, piece in enumerate(events):
            if n and reply.chunk_delay_s:
                await sleep_polling(request, reply.chunk_delay_s)
            await resp.write(piece)
        if cut:
            assert request.transport is not None
            # A real mid-stream connection loss: no terminating event.
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp


def parse_sse(blob: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) per event of a complete SSE byte stream; comments dropped.

    For tests reading what an emulator sent; any line ending is accepted.
    """
    out: list[tuple[str | None, str]] = []
    name: str | None = None
    data: list[str] = []
    for line in re.split(r"\r\n|\r|\n", blob.decode()):
        if line == "":
            if data:
                out.append((name, "\n".join(data)))
            name, data = None, []
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
    return out
