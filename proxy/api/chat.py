"""The chat surface (`/v2/router/chat/completions`, `/v1/chat/completions`): its request → the
canonical model, and canonical results and deltas → `chat.completion` / `chat.completion.chunk`.

Reasoning travels as orq names it: `reasoning`, `reasoning_signature` and `redacted_reasoning` on
the message and on the delta. In-progress chunks carry `finish_reason: null`, as OpenAI and
orq's chat router do; usage comes as a last chunk with no choices when the client asked for it
with `stream_options.include_usage`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.api.chat_request import (
    CHAT_DEFAULTS,
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    ImagePart,
    JsonSchemaFormat,
    NamedToolChoice,
    TextPart,
    ToolMessage,
)
from proxy.api.completions import sampling_of
from proxy.api.decode import decode_chat
from proxy.api.surface import Surface
from proxy.core import model
from proxy.core.model import ChatRequest, Delta, Result, StreamHead, Usage
from proxy.core.sse import frame

NAME = "chat"
WIRE = "openai.chat"


# -- request --------------------------------------------------------------------------------------------------
def _content(content: Any) -> str | list[model.ContentPart] | None:
    if content is None or isinstance(content, str):
        return content
    parts: list[model.ContentPart] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append(model.TextPart(part.text))
        elif isinstance(part, ImagePart):
            parts.append(model.ImagePart(part.image_url.url, part.image_url.detail))
    return parts


def _message(message: ChatMessage) -> model.Message:
    role = type(message).__struct_config__.tag
    out = model.Message(role, _content(message.content), name=getattr(message, "name", None))  # type: ignore[arg-type]
    if isinstance(message, AssistantMessage) and message.tool_calls:
        out.tool_calls = [model.ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls]
    if isinstance(message, ToolMessage):
        out.tool_call_id = message.tool_call_id
    return out


def _tool_choice(choice: Any) -> model.ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, NamedToolChoice):
        return model.ToolChoice("function", choice.function.name)
    return model.ToolChoice(choice)


def _response_format(fmt: Any) -> model.ResponseFormat | None:
    if fmt is None:
        return None
    if isinstance(fmt, JsonSchemaFormat):
        schema = fmt.json_schema
        return model.ResponseFormat("json_schema", schema.name, schema.schema, schema.strict)
    return model.ResponseFormat(type(fmt).__struct_config__.tag)  # type: ignore[arg-type]


def to_canonical(request: ChatCompletionRequest, extras: dict[str, Any] | None) -> ChatRequest:
    assert request.messages is not None  # checked by the decoder
    max_tokens = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    return ChatRequest(
        messages=[_message(m) for m in request.messages],
        max_tokens=max_tokens,
        tools=[model.ToolSpec(t.function.name, t.function.description, t.function.parameters, t.function.strict)
               for t in request.tools] if request.tools else None,
        tool_choice=_tool_choice(request.tool_choice),
        parallel_tool_calls=request.parallel_tool_calls,
        response_format=_response_format(request.response_format),
        logprobs=request.logprobs,
        top_logprobs=request.top_logprobs,
        reasoning_effort=request.reasoning_effort,
        metadata=request.metadata,
        extras=extras,
        **sampling_of(request),
    )


def last_user_text(request: ChatRequest) -> str:
    """What a knowledge search asks by default on chat: the last user message."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text()
    return ""


# -- response -------------------------------------------------------------------------------------------------
class Function(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class OutToolCall(msgspec.Struct, omit_defaults=True):
    index: int | None = None  # on stream deltas only
    id: str | None = None
    type: str | None = None
    function: Function | None = None


class OutMessage(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    reasoning: str | None = None
    reasoning_signature: str | None = None
    redacted_reasoning: str | None = None
    tool_calls: list[OutToolCall] | None = None


class OutChoice(msgspec.Struct):
    index: int
    message: OutMessage
    finish_reason: str
    logprobs: Any = None


class ChatCompletion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[OutChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: OutMessage
    finish_reason: str | None = None
    logprobs: Any = None


class ChatChunk(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


_encode = msgspec.json.Encoder().encode


def _message_out(choice: model.Choice) -> OutMessage:
    calls = [OutToolCall(id=c.id, type="function", function=Function(c.name, c.arguments))
             for c in choice.tool_calls or ()]
    return OutMessage(role="assistant", content=choice.text if choice.text or not calls else None,
                      reasoning=choice.reasoning, reasoning_signature=choice.reasoning_signature,
                      redacted_reasoning=choice.redacted_reasoning, tool_calls=calls or None)


def render(result: Result) -> bytes:
    return _encode(ChatCompletion(
        id=result.id, object="chat.completion", created=result.created, model=result.model,
        choices=[OutChoice(c.index, _message_out(c), c.finish_reason, c.logprobs) for c in result.choices],
        usage=result.usage, system_fingerprint=result.system_fingerprint))


class ChatRenderer:
    """Canonical deltas → chat chunks: the first delta of each choice carries the role; usage
    follows as a chunk with no choices when the client asked for it."""

    def __init__(self, head: StreamHead, include_usage: bool) -> None:
        self.head = head
        self.include_usage = include_usage
        self.started: set[int] = set()
        self.usage: Usage | None = None

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> bytes:
        head = self.head
        return frame(_encode(ChatChunk(id=head.id, object="chat.completion.chunk", created=head.created,
                                       model=head.model, choices=choices, usage=usage,
                                       system_fingerprint=head.system_fingerprint)))

    def render(self, deltas: list[Delta]) -> bytes:
        out = bytearray()
        for delta in deltas:
            if delta.index < 0:
                self.usage = delta.usage
                continue
            message = OutMessage(
                content=delta.text or None, reasoning=delta.reasoning, reasoning_signature=delta.reasoning_signature,
                redacted_reasoning=delta.redacted_reasoning,
                tool_calls=[OutToolCall(index=c.index, id=c.id, type="function" if c.id else None,
                                        function=Function(c.name, c.arguments)) for c in delta.tool_calls]
                if delta.tool_calls else None)
            if delta.index not in self.started:
                self.started.add(delta.index)
                message.role = "assistant"
                if message.content is None and not message.tool_calls:
                    message.content = ""
            out += self._chunk([ChunkChoice(delta.index, message, delta.finish_reason, delta.logprobs)])
        return bytes(out)

    def finish(self) -> bytes:
        if self.include_usage and self.usage is not None:
            return self._chunk([], self.usage)
        return b""


def replay(result: Result, include_usage: bool) -> list[bytes]:
    """A whole answer as chunks (a cache hit on a stream)."""
    renderer = ChatRenderer(StreamHead(result.id, result.created, result.model, result.system_fingerprint),
                            include_usage)
    deltas = [Delta(index=c.index, text=c.text, reasoning=c.reasoning, reasoning_signature=c.reasoning_signature,
                    redacted_reasoning=c.redacted_reasoning, logprobs=c.logprobs, finish_reason=c.finish_reason,
                    tool_calls=[model.ToolCallDelta(i, t.id, t.name, t.arguments) for i, t in enumerate(c.tool_calls)]
                    if c.tool_calls else None)
              for c in result.choices]
    if result.usage is not None:
        deltas.append(Delta(index=-1, usage=result.usage))
    return [renderer.render(deltas) + renderer.finish()]


def _include_usage(request: Any) -> bool:
    options = getattr(request, "stream_options", None)
    return bool(options and options.include_usage)


SURFACE = Surface(
    name=NAME, wire=WIRE, decode=decode_chat, to_canonical=to_canonical, render=render,
    replay=lambda result, request: replay(result, _include_usage(request)),
    renderer=lambda head, request: ChatRenderer(head, _include_usage(request)),
    defaults=CHAT_DEFAULTS,
)
