"""`type: anthropic` — Anthropic's Messages API (`POST {base_url}/v1/messages`).

One prompt and one choice per call: the ChatConnector base serves prompt lists, `n` and `echo`
(proxy.providers.chat). Parameters and the rules Anthropic adds per model and API version are
declared in params.py; docs/providers.md has the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.core.errors import ErrorCode, ProxyError, UpstreamError, protocol_error
from proxy.core.model import ChatRequest, Result, StreamHead, TextPart
from proxy.core.stream import CallContext, UpstreamStream
from proxy.core.target import Target
from proxy.providers.anthropic import wire
from proxy.providers.anthropic.params import (
    CHAT_MAX_TOKENS,
    DEFAULT_VERSION,
    DROPPED_EXTRAS,
    PARAMS,
    refusal,
)
from proxy.providers.anthropic.stream import NO_REASONING_WIRES, DeltaDecoder
from proxy.providers.anthropic.translate import (
    error_from,
    result_of,
    to_wire,
    tool_input,
)
from proxy.providers.chat import ChatConnector
from proxy.providers.effort import thinking_for
from proxy.providers.http import SSEBytes

_encode = msgspec.json.Encoder().encode
_message_decoder = msgspec.json.Decoder(wire.Message)


def with_effort(request: ChatRequest) -> ChatRequest:
    """`reasoning_effort` as Anthropic thinking, through the shared budget table
    (proxy.providers.effort); an explicit `thinking` wins. Left unset, `max_tokens` becomes the
    budget plus the chat default, so the answer still has room after the thinking."""
    if request.thinking is not None or request.reasoning_effort is None:
        return request
    thinking = thinking_for(request)
    assert thinking is not None
    if thinking.type == "disabled" or thinking.budget_tokens is None:
        return msgspec.structs.replace(request, thinking=thinking, reasoning_effort=None)
    max_tokens = request.max_tokens if request.max_tokens is not None else thinking.budget_tokens + CHAT_MAX_TOKENS
    return msgspec.structs.replace(request, thinking=thinking, max_tokens=max_tokens, reasoning_effort=None)


class AnthropicConnector(ChatConnector):
    PARAMS = PARAMS
    NATIVE_N = False
    url: str

    @property
    def version(self) -> str:
        return self.config.anthropic_version or DEFAULT_VERSION

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.version}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    async def start(self) -> None:
        await super().start()
        assert self.config.base_url is not None
        self.url = self.config.base_url.rstrip("/") + "/v1/messages"

    def check(self, request: ChatRequest, target: Target) -> None:
        request = with_effort(request)
        # The extra to name is the first one that is not merely dropped.
        for name in request.extras or ():
            if name not in DROPPED_EXTRAS:
                self._refuse(name, "it is outside the schema (OpenAI's), and Anthropic's Messages API does not take it")
        super().check(request, target)
        for i, message in enumerate(request.messages):
            if isinstance(message.content, list) and not all(isinstance(p, TextPart) for p in message.content):
                self._refuse(f"messages[{i}]", "only text and tool messages are sent to Anthropic so far")
            for j, call in enumerate(message.tool_calls or ()):
                if tool_input(call.arguments) is None:
                    self._refuse(f"messages[{i}].tool_calls[{j}].function.arguments",
                                 "Anthropic takes a tool call's arguments as a JSON object, and these are not one")
        rule = refusal(request, target.model, self.version)
        if rule is not None:
            self._refuse(rule.field, rule.reason, target)

    def _refuse(self, param: str, reason: str, target: Target | None = None) -> None:
        where = f"{self.name!r}" + (f" (model {target.model!r})" if target is not None else "")
        raise ProxyError(400, f"Provider {where} cannot honour `{param}`: {reason}", param=param,
                         code=ErrorCode.unsupported_parameter)

    def error_from(self, target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return error_from(target, status, raw, headers)

    def _body(self, request: ChatRequest, target: Target) -> bytes:
        return _encode(to_wire(with_effort(request), target, self.version))

    async def complete_one(self, request: ChatRequest, target: Target, ctx: CallContext) -> Result:
        response = await self.post(self.url, self._body(request, target), target, ctx)
        raw = await self.read(response, target)
        try:
            message = _message_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise protocol_error(target.label, f"not a Message: {err}") from None
        return result_of(message, target)

    async def stream_one(self, request: ChatRequest, target: Target, ctx: CallContext) -> UpstreamStream[Any]:
        response = await self.post(self.url, self._body(request, target), target, ctx, stream=True)
        decoder = DeltaDecoder(target, reasoning_is_content=ctx.wire not in NO_REASONING_WIRES)
        batches = self.read_loop(response, SSEBytes(decoder, self.config.max_event_bytes), target, "message_stop")
        return await UpstreamStream.open(batches, response.close,
                                         lambda: decoder.head or StreamHead("", 0, target.model))


CONNECTOR = AnthropicConnector
