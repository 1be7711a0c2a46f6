"""OpenAI's `/chat/completions` wire format ↔ the canonical model: the request body, the whole
answer, and stream chunks as canonical deltas.

Servers differ in where they put reasoning (`reasoning_content` on vLLM, llama.cpp and DeepSeek,
`reasoning` on others): both are read as canonical reasoning, never as answer text.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.core.model import (
    ChatRequest,
    Choice,
    Delta,
    ImagePart,
    Message,
    Result,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from proxy.core.target import Target
from proxy.providers.openai.translate import finish_reason
from proxy.providers.openai.wire import UpstreamErrorBody

_encode = msgspec.json.Encoder().encode


# -- what we send ---------------------------------------------------------------------------------------------
def _content(message: Message) -> Any:
    if message.content is None or isinstance(message.content, str):
        return message.content
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image: dict[str, Any] = {"url": part.url}
            if part.detail:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
    return parts


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": _content(message)}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def chat_body(request: ChatRequest, target: Target) -> bytes:
    body: dict[str, Any] = {**(request.extras or {}), "model": target.model,
                            "messages": [_message(m) for m in request.messages]}
    for name in ("max_tokens", "temperature", "top_p", "n", "stop", "seed", "frequency_penalty",
                 "presence_penalty", "user", "parallel_tool_calls", "logprobs", "top_logprobs",
                 "reasoning_effort", "metadata"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.tools:
        body["tools"] = [{"type": "function", "function": msgspec.to_builtins(tool)} for tool in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = ({"type": "function", "function": {"name": choice.name}}
                               if choice.type == "function" else choice.type)
    if request.response_format is not None:
        fmt = request.response_format
        body["response_format"] = {"type": fmt.type}
        if fmt.type == "json_schema":
            body["response_format"]["json_schema"] = msgspec.to_builtins(
                {"name": fmt.name, "schema": fmt.schema, "strict": fmt.strict})
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # so streamed answers report tokens too
    return _encode(body)


# -- what comes back ------------------------------------------------------------------------------------------
class WireFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class WireToolCall(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: WireFunction | None = None


class WireMessage(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[WireToolCall] | None = None


class WireChoice(msgspec.Struct):
    index: int = 0
    message: WireMessage | None = None
    delta: WireMessage | None = None
    finish_reason: str | None = None
    logprobs: Any = None


class WireChat(msgspec.Struct):
    """A chat completion or a chunk of one; lenient, as OpenAI-compatible servers differ."""

    id: str = ""
    created: int = 0
    model: str = ""
    choices: list[WireChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    error: UpstreamErrorBody | str | None = None


decode_chat = msgspec.json.Decoder(WireChat).decode


def _reasoning(message: WireMessage) -> str | None:
    return message.reasoning_content or message.reasoning or None


def chat_result(upstream: WireChat, target: Target) -> Result:
    choices = []
    for c in upstream.choices:
        message = c.message or WireMessage()
        calls = [ToolCall(t.id or "", (t.function or WireFunction()).name or "",
                          (t.function or WireFunction()).arguments or "") for t in message.tool_calls or ()]
        choices.append(Choice(index=c.index, text=message.content or "", finish_reason=finish_reason(c.finish_reason),
                              reasoning=_reasoning(message), tool_calls=calls or None, logprobs=c.logprobs))
    return Result(id=upstream.id, created=upstream.created, model=upstream.model or target.model, choices=choices,
                  usage=upstream.usage, system_fingerprint=upstream.system_fingerprint)


def chat_deltas(chunk: WireChat) -> list[Delta]:
    deltas = []
    for c in chunk.choices:
        delta = c.delta or WireMessage()
        calls = [ToolCallDelta(t.index, t.id, (t.function or WireFunction()).name,
                               (t.function or WireFunction()).arguments or "") for t in delta.tool_calls or ()]
        deltas.append(Delta(index=c.index, text=delta.content or "", reasoning=_reasoning(delta),
                            tool_calls=calls or None, logprobs=c.logprobs,
                            finish_reason=finish_reason(c.finish_reason) if c.finish_reason is not None else None))
    if chunk.usage is not None:
        deltas.append(Delta(index=-1, usage=chunk.usage))
    return deltas
