"""Loopback emulator of OpenAI's ``POST /v1/completions`` and ``POST /v1/chat/completions``.

The server machinery (threading, scripts, records, disconnects) lives in `base`; the chat
wire format in `openai_chat` (answers) and `openai_chat_check` (request checks). Every
public method is safe to call from the test thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.emulators import openai_chat, openai_embeddings, rerank
from tests.emulators.base import (
    Emulator,
    Recorded,
    dumps,
    json_response,
    pieces,
    sleep_polling,
)
from tests.emulators.openai_chat_check import check
from tests.emulators.openai_wire import BadRequest, Reply, openai_error

__all__ = ["BadRequest", "OpenAIEmulator", "Recorded", "Reply", "openai_error"]

Build = Callable[[Reply, dict, str], dict]
Events = Callable[[Reply, dict, str], tuple[list[bytes], bool]]


def _prompts(prompt: Any) -> list[str]:
    # The API takes str | list[str] | list[int] | list[list[int]]; tokens echo as "".
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        return [p if isinstance(p, str) else "" for p in prompt]
    return [""]


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

    choices = [(i, pieces(text, reply.chunks)) for i, text in _choices(reply, body)]
    sent = 0  # content events so far, counted across choices
    for k in range(max(1, reply.chunks)):
        for i, parts in choices:
            if sent == reply.cut_after_chunks:
                return out, True
            if sent == reply.error_event_after_chunks:
                event(dumps(reply.error_body or openai_error(500)))
                return out, False
            fin = reply.finish_reason if k == len(parts) - 1 else None
            chunk = {**head, "choices": [_choice(parts[k], i, fin)]}
            if with_usage:
                chunk["usage"] = None
            event(dumps(chunk))
            sent += 1
    if sent == reply.cut_after_chunks:
        return out, True
    if with_usage:
        event(dumps({**head, "choices": [], "usage": _usage(reply)}))
    event(b"[DONE]")
    return out, False


def _json(status: int, obj: Any, extra: dict[str, str] | None = None) -> web.Response:
    headers = {"x-request-id": f"req_{secrets.token_hex(16)}", **(extra or {})}
    return json_response(status, obj, headers)


class OpenAIEmulator(Emulator[Reply]):
    """Scriptable fake OpenAI server; see `Reply` for what can be scripted."""

    reply_type = Reply
    name = "openai"

    def __init__(self, api_key: str | None = None, allow_unknown_fields: bool = False) -> None:
        super().__init__(api_key)
        # The real API refuses chat fields it does not know; OpenAI-compatible servers
        # (vLLM, LiteLLM...) take them, which is what this switch emulates.
        self.allow_unknown_fields = allow_unknown_fields

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        # Not OpenAI's: Jina's rerank endpoint, so one loopback provider can serve a knowledge base.
        app.router.add_post("/v1/rerank", self._rerank)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    def _authorized(self, request: web.Request) -> bool:
        expected = f"Bearer {self.api_key}"
        return self.api_key is None or request.headers.get("Authorization") == expected

    async def _not_found(self, request: web.Request) -> web.Response:
        await self.record(request)
        message = f"Invalid URL ({request.method} {request.path})"
        return _json(404, openai_error(404, message=message))

    async def _models(self, request: web.Request) -> web.Response:
        await self.record(request)
        if not self._authorized(request):
            return _json(401, openai_error(401))
        with self._lock:
            names = list(self._scripts)
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "emulator"}
            for m in names
        ]
        return _json(200, {"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.Response:
        return await self._model_call(request, openai_embeddings.answer)

    async def _rerank(self, request: web.Request) -> web.Response:
        return await self._model_call(request, rerank.answer)

    async def _model_call(self, request: web.Request, answer: Any) -> web.Response:
        body = await self.record(request)
        if not self._authorized(request):
            return _json(401, openai_error(401))
        if body is None:
            return _json(400, openai_error(400, message="We could not parse the JSON body of your request."))
        model = body.get("model")
        reply = self.next_reply(model) if isinstance(model, str) else Reply()
        if reply.status >= 400:  # scripted failure (e.g. 503: the embedding provider is down)
            return _json(reply.status, reply.error_body or openai_error(reply.status, model))
        status, payload = answer(body)
        return _json(status, payload)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        body = await self.record(request)
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
        reply = self.next_reply(model)
        work = self._answer(request, reply, body, model, started, _completion, _sse_events)
        return await self.guarded(work)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        body = await self.record(request)
        if not self._authorized(request):
            return _json(401, openai_error(401))
        if body is None:
            message = "We could not parse the JSON body of your request."
            return _json(400, openai_error(400, message=message))
        model = body.get("model")
        try:
            if model is None:
                raise BadRequest("Missing required parameter: 'model'.", "model", "missing_required_parameter")
            if not isinstance(model, str):
                message = "Invalid type for 'model': expected a string."
                raise BadRequest(message, "model", "invalid_type")
            # Checked before the script, so a refused request does not consume a reply.
            check(body, model, self.allow_unknown_fields)
        except BadRequest as exc:
            return _json(400, exc.body())
        reply = self.next_reply(model)
        work = self._answer(
            request, reply, body, model, started, openai_chat.completion, openai_chat.sse_events
        )
        return await self.guarded(work)

    async def _answer(
        self,
        request: web.Request,
        reply: Reply,
        body: dict,
        model: str,
        started: float,
        build: Build,
        events_of: Events,
    ) -> web.StreamResponse:
        await sleep_polling(request, reply.delay_s)
        if reply.status >= 400 and reply.raw_body is None:
            error = reply.error_body or openai_error(reply.status, model)
            return _json(reply.status, error, reply.headers)
        if body.get("stream"):
            events, cut = events_of(reply, body, model)
            headers = {"x-request-id": f"req_{secrets.token_hex(16)}"}
            return await self.send_stream(request, reply, events, cut, headers)
        ms = int((time.monotonic() - started) * 1000)
        extra = {"openai-processing-ms": str(ms), **reply.headers}
        raw = reply.raw_body
        payload = build(reply, body, model) if raw is None else raw
        return _json(reply.status, payload, extra)
