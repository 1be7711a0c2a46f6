"""`type: openai` — OpenAI and every server that speaks its `/v1/completions` wire format
(vLLM, llama.cpp, Ollama, Together, Groq, DeepSeek, Mistral, OpenRouter, …)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.core.errors import (
    UpstreamError,
    protocol_error,
)
from proxy.core.model import ChatRequest, Message, Result, StreamHead
from proxy.core.stream import CallContext, UpstreamStream
from proxy.core.target import Target
from proxy.providers.http import HTTPConnector
from proxy.providers.openai import wire
from proxy.providers.openai.chat import (
    WireChat,
    chat_body,
    chat_deltas,
    chat_result,
    decode_chat,
)
from proxy.providers.openai.params import LEGACY_CHAT, PARAMS
from proxy.providers.openai.stream import (
    PASSTHROUGH,
    DeltaDecoder,
    StreamTranslator,
    collect_frames,
)
from proxy.providers.openai.translate import error_from_body, error_in_body, result_of
from proxy.providers.params import refuse_unsupported

_encode = msgspec.json.Encoder().encode
_completion_decoder = msgspec.json.Decoder(wire.UpstreamCompletion)
_STREAM_OPTIONS = wire.StreamOptions()
_WIRE_FIELDS = frozenset(wire.UpstreamRequest.__struct_fields__)


def request_body(request: ChatRequest, target: Target) -> bytes:
    """The legacy-completions body: the raw prompt, the parameters as the client set them, and
    fields outside our schema passed through unchanged (README, "Parameters")."""
    body = wire.UpstreamRequest(
        model=target.model,
        prompt=request.prompt if request.prompt is not None else "",
        stream=request.stream,
        stream_options=_STREAM_OPTIONS if request.stream else None,
        echo=request.echo,
        frequency_penalty=request.frequency_penalty,
        max_tokens=request.max_tokens,
        presence_penalty=request.presence_penalty,
        seed=request.seed,
        stop=request.stop,
        temperature=request.temperature,
        top_p=request.top_p,
        n=request.n,
        user=request.user,
    )
    encoded = _encode(body)
    extras = request.extras
    if not extras:
        return encoded
    # Extras are spliced in as JSON, not merged as dicts (a merge cost more than the rest of
    # the request's encoding). Our own fields win over an extra of the same name: the surface
    # lets none through but `stream_options`, which is ours to set.
    if not _WIRE_FIELDS.isdisjoint(extras):
        extras = {k: v for k, v in extras.items() if k not in _WIRE_FIELDS}
        if not extras:
            return encoded
    return encoded[:-1] + b"," + _encode(extras)[1:]


class OpenAIConnector(HTTPConnector):
    PARAMS = PARAMS
    url: str
    chat_url: str

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    def error_from(self, target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return error_from_body(target, status, raw, headers)

    async def start(self) -> None:
        await super().start()
        assert self.config.base_url is not None
        base = self.config.base_url.rstrip("/")
        self.url = base + "/completions"
        self.chat_url = base + "/chat/completions"

    def check(self, request: ChatRequest, target: Target) -> None:
        super().check(request, target)
        if request.prompt is None and self.config.chat_endpoint is False:
            refuse_unsupported(LEGACY_CHAT, request, self.name)

    def _chat(self, request: ChatRequest) -> bool:
        """Whether this request goes to /chat/completions (else /completions with a prompt)."""
        return request.prompt is None and self.config.chat_endpoint is not False

    def _legacy(self, request: ChatRequest, target: Target) -> bytes:
        if request.prompt is None:  # a chat on a server with only the legacy endpoint
            request = msgspec.structs.replace(request, prompt=legacy_prompt(request.messages))
        return request_body(request, target)

    async def complete(self, request: ChatRequest, target: Target, ctx: CallContext) -> Result:
        chat = self._chat(request)
        body = chat_body(request, target) if chat else self._legacy(request, target)
        response = await self.post(self.chat_url if chat else self.url, body, target, ctx)
        raw = await self.read(response, target)
        try:
            upstream = decode_chat(raw) if chat else _completion_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise protocol_error(target.label, str(err)) from None
        if upstream.error is not None:
            raise error_in_body(target, upstream.error)
        if isinstance(upstream, WireChat):
            return chat_result(upstream, target)
        return result_of(upstream, target)

    async def stream(self, request: ChatRequest, target: Target, ctx: CallContext) -> UpstreamStream[Any]:
        chat = self._chat(request)
        body = chat_body(request, target) if chat else self._legacy(request, target)
        response = await self.post(self.chat_url if chat else self.url, body, target, ctx, stream=True)
        limit = self.config.max_event_bytes
        if chat:
            chat_decoder = DeltaDecoder(target, limit, decode_chat, chat_deltas)
            return await UpstreamStream.open(self.read_loop(response, chat_decoder, target), response.close,
                                             lambda: chat_decoder.head or _no_head())
        if ctx.wire == PASSTHROUGH:
            translate = StreamTranslator(target, limit)
            stream: UpstreamStream[Any] = await UpstreamStream.open(
                self.read_loop(response, translate, target), response.close, _no_head, PASSTHROUGH, collect_frames)
            stream.usage_source = translate
            return stream
        decoder = DeltaDecoder(target, limit)
        return await UpstreamStream.open(self.read_loop(response, decoder, target), response.close,
                                         lambda: decoder.head or _no_head())


def legacy_prompt(messages: list[Message]) -> str:
    """A chat as one prompt for a server with only `/completions`: each message as `role: text`,
    then `assistant:` for the model to continue (README, "Providers")."""
    lines = [f"{message.role}: {message.text()}" for message in messages]
    return "\n\n".join([*lines, "assistant:"])


def _no_head() -> StreamHead:
    return StreamHead("", 0, "")


CONNECTOR = OpenAIConnector
