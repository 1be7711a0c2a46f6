"""Loopback emulator of OpenAI's legacy ``POST /v1/completions`` wire format.

Runs an aiohttp server on its own event loop in a daemon thread so synchronous
pytest code can drive it; every public method is safe to call from the test thread.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

# Sleeps poll the socket this often, so a vanished client is noticed within ~50 ms.
_POLL_S = 0.05

_INVALID = "invalid_request_error"
# status -> (type, code, message) as the real API answers; other 4xx/5xx use 400/500.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: (_INVALID, None, "Invalid request (emulated)."),
    401: (_INVALID, "invalid_api_key", "Incorrect API key provided."),
    404: (_INVALID, "model_not_found", "The model `{model}` does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model}."),
    500: ("server_error", None, "The server had an error processing your request."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}


@dataclass
class Reply:
    """One scripted answer; the stream-only fields are ignored for non-stream calls."""

    status: int = 200
    error_body: dict | None = None
    raw_body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    text: str = "Hello from the emulator"
    chunks: int = 4
    chunk_delay_s: float = 0.0
    cut_after_chunks: int | None = None
    error_event_after_chunks: int | None = None
    split_at: list[int] | None = None
    crlf: bool = False
    comments: bool = False
    finish_reason: str = "stop"
    prompt_tokens: int = 5
    completion_tokens: int = 7


@dataclass
class Recorded:
    """One request as received; header names are lower-cased."""

    path: str
    method: str
    headers: dict[str, str]
    body: dict | None
    model: str | None
    received_at: float


def openai_error(status: int, model: str | None = None, message: str = "") -> dict:
    """OpenAI's error envelope with the type and code the real API uses for `status`."""
    type_, code, default = _ERRORS.get(status) or _ERRORS[500 if status >= 500 else 400]
    text = message or default.format(model=model)
    return {"error": {"message": text, "type": type_, "param": None, "code": code}}


def _dumps(obj: Any) -> bytes:
    # Compact and raw UTF-8 like OpenAI, so multi-byte chars appear in the byte stream.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _prompts(prompt: Any) -> list[str]:
    # The API takes str | list[str] | list[int] | list[list[int]]; tokens echo as "".
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        return [p if isinstance(p, str) else "" for p in prompt]
    return [""]


def _pieces(text: str, n: int) -> list[str]:
    # Split by characters, never bytes, so each JSON chunk holds whole code points.
    n = max(1, n)
    return [text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(n)]


def _head(model: str) -> dict:
    return {
        "id": f"cmpl-{secrets.token_hex(12)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_emulator",
    }


def _usage(reply: Reply) -> dict:
    p, c = reply.prompt_tokens, reply.completion_tokens
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _choices(reply: Reply, body: dict) -> list[tuple[int, str]]:
    """(index, text) per choice: n per prompt, index = prompt_index * n + j."""
    n = body.get("n")
    n = n if isinstance(n, int) and n > 0 else 1
    echo = body.get("echo") is True
    prompts = _prompts(body.get("prompt"))
    return [
        (p * n + j, (prompt if echo else "") + reply.text)
        for p, prompt in enumerate(prompts)
        for j in range(n)
    ]


def _choice(text: str, i: int, fin: str | None) -> dict:
    return {"text": text, "index": i, "logprobs": None, "finish_reason": fin}


def _completion(reply: Reply, body: dict, model: str) -> dict:
    choices = [_choice(t, i, reply.finish_reason) for i, t in _choices(reply, body)]
    return {**_head(model), "choices": choices, "usage": _usage(reply)}


def _sse_events(reply: Reply, body: dict, model: str) -> tuple[list[bytes], bool]:
    """The stream as wire events, and whether to abort the socket after them."""
    if reply.raw_body is not None:
        return [reply.raw_body], False
    eol = b"\r\n" if reply.crlf else b"\n"
    opts = body.get("stream_options")
    with_usage = isinstance(opts, dict) and opts.get("include_usage") is True
    head = _head(model)
    out: list[bytes] = []

    def event(payload: bytes) -> None:
        # comments=True alternates a stand-alone comment block and a comment line
        # inside the event: both are valid SSE that naive parsers get wrong.
        prefix = b""
        if reply.comments:
            prefix = b": keep-alive" + eol + (eol if len(out) % 2 == 0 else b"")
        out.append(prefix + b"data: " + payload + eol + eol)

    choices = [(i, _pieces(text, reply.chunks)) for i, text in _choices(reply, body)]
    sent = 0  # content events so far, counted across choices
    for k in range(max(1, reply.chunks)):
        for i, pieces in choices:
            if sent == reply.cut_after_chunks:
                return out, True
            if sent == reply.error_event_after_chunks:
                event(_dumps(reply.error_body or openai_error(500)))
                return out, False
            fin = reply.finish_reason if k == len(pieces) - 1 else None
            chunk = {**head, "choices": [_choice(pieces[k], i, fin)]}
            if with_usage:
                chunk["usage"] = None
            event(_dumps(chunk))
            sent += 1
    if sent == reply.cut_after_chunks:
        return out, True
    if with_usage:
        event(_dumps({**head, "choices": [], "usage": _usage(reply)}))
    event(b"[DONE]")
    return out, False


def _json(status: int, obj: Any, extra: dict[str, str] | None = None) -> web.Response:
    # bytes go out verbatim: that is how Reply.raw_body sends a garbage body
    body = obj if isinstance(obj, bytes) else _dumps(obj)
    resp = web.Response(status=status, body=body, content_type="application/json")
    resp.headers["x-request-id"] = f"req_{secrets.token_hex(16)}"
    resp.headers.update(extra or {})  # last, so a script may override any header
    return resp


async def _sleep(request: web.Request, seconds: float) -> None:
    # Poll the socket while sleeping: a backstop should cancellation not reach us.
    deadline = time.monotonic() + seconds
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client went away")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, _POLL_S))


class OpenAIEmulator:
    """Scriptable fake OpenAI server; see `Reply` for what can be scripted."""

    def __init__(self, api_key: str | None = None) -> None:
        self._api_key = api_key
        self._lock = threading.Lock()  # guards the state shared with the test thread
        self._scripts: dict[str, list[Reply]] = {}
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
            raise RuntimeError("emulator already started")
        ready = threading.Event()
        self._stopping, self._start_error, self._port = False, None, 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="openai-emulator", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or self._start_error is not None or not self._port:
            raise RuntimeError("OpenAI emulator failed to start") from self._start_error

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
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    # ---- scripting and inspection (test thread) ----
    def script(self, model: str, *replies: Reply) -> None:
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
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
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

    async def _record(self, request: web.Request) -> dict | None:
        """Record the request; return its JSON object body, or None if it has none."""
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        model = body.get("model") if body else None
        rec = Recorded(
            path=request.path,
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            model=model if isinstance(model, str) else None,
            received_at=time.monotonic(),
        )
        with self._lock:
            self._records.append(rec)
        return body

    def _authorized(self, request: web.Request) -> bool:
        expected = f"Bearer {self._api_key}"
        return self._api_key is None or request.headers.get("Authorization") == expected

    def _next_reply(self, model: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(model)
            if not queue:
                return Reply()
            return queue.pop(0) if len(queue) > 1 else queue[0]

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        message = f"Invalid URL ({request.method} {request.path})"
        return _json(404, openai_error(404, message=message))

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request):
            return _json(401, openai_error(401))
        with self._lock:
            names = list(self._scripts)
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "emulator"}
            for m in names
        ]
        return _json(200, {"object": "list", "data": data})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        body = await self._record(request)
        # Auth comes before the script so a 401 does not consume a scripted reply.
        if not self._authorized(request):
            return _json(401, openai_error(401))
        if body is None:
            message = "We could not parse the JSON body of your request."
            return _json(400, openai_error(400, message=message))
        model = body.get("model")
        if not isinstance(model, str):
            message = "you must provide a model parameter"
            return _json(400, openai_error(400, message=message))
        reply = self._next_reply(model)
        try:
            await _sleep(request, reply.delay_s)
            if reply.status >= 400 and reply.raw_body is None:
                error = reply.error_body or openai_error(reply.status, model)
                return _json(reply.status, error, reply.headers)
            if body.get("stream"):
                return await self._stream(request, reply, body, model)
            ms = int((time.monotonic() - started) * 1000)
            extra = {"openai-processing-ms": str(ms), **reply.headers}
            raw = reply.raw_body
            payload = _completion(reply, body, model) if raw is None else raw
            return _json(reply.status, payload, extra)
        except asyncio.CancelledError:  # handler_cancellation: the client went away
            self._note_disconnect()
            raise
        except ConnectionError:  # a write or a sleep found the socket gone
            self._note_disconnect()
            # Never reaches the client; aiohttp swallows the failed write quietly,
            # where raising would log a spurious "Error handling request".
            return web.Response(status=499)

    async def _stream(
        self, request: web.Request, reply: Reply, body: dict, model: str
    ) -> web.StreamResponse:
        events, cut = _sse_events(reply, body, model)
        if reply.split_at is not None:  # re-slice the whole byte stream at the offsets
            blob = b"".join(events)
            inner = sorted(o for o in set(reply.split_at) if 0 < o < len(blob))
            events = [blob[a:b] for a, b in itertools.pairwise([0, *inner, len(blob)])]
        resp = web.StreamResponse(status=reply.status)
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        resp.headers["cache-control"] = "no-cache"
        resp.headers["x-request-id"] = f"req_{secrets.token_hex(16)}"
        resp.headers.update(reply.headers)
        await resp.prepare(request)
        for n, piece in enumerate(events):
            if n and reply.chunk_delay_s:
                await _sleep(request, reply.chunk_delay_s)
            await resp.write(piece)
        if cut:
            assert request.transport is not None
            # A real mid-stream connection loss: no terminating chunk, no [DONE].
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp
