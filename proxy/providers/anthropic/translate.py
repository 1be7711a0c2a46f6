"""The canonical model ↔ Anthropic's Messages API, and its error bodies → our errors."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from proxy.core.errors import ErrorCode, UpstreamError, protocol_error, status_error
from proxy.core.model import (
    ChatRequest,
    Choice,
    FinishReason,
    Message,
    Result,
    ToolCall,
    Usage,
)
from proxy.core.target import Target
from proxy.providers.anthropic import wire
from proxy.providers.anthropic.params import adaptive_only, dropped, max_tokens_of
from proxy.providers.http import retry_after
from proxy.providers.params import is_set

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool paused a long turn: the text so far is complete
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}


def finish_reason(reason: str | None) -> FinishReason:
    return _FINISH.get(reason or "", "stop")


# -- request --------------------------------------------------------------------------------------------
_object = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder().encode


def tool_input(arguments: str) -> dict[str, Any] | None:
    """A tool call's JSON arguments as the object Anthropic's `input` is; None when they are not
    a JSON object (connector.check refuses those before any call). Empty arguments are `{}`."""
    if not arguments.strip():
        return {}
    try:
        return _object.decode(arguments)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _blocks(message: Message) -> list[wire.ContentBlock]:
    """A non-system turn as content blocks: a tool result, or text then the turn's tool calls."""
    text = message.text()
    if message.role == "tool":
        return [wire.ToolResultBlock(message.tool_call_id or "", text or None)]
    blocks: list[wire.ContentBlock] = [wire.TextBlock(text)] if text or not message.tool_calls else []
    for call in message.tool_calls or ():
        blocks.append(wire.ToolUseBlock(call.id, call.name, tool_input(call.arguments) or {}))
    return blocks


def _messages(messages: list[Message]) -> tuple[str | None, list[wire.MessageParam]]:
    """System and developer turns become the top-level `system`; tool results become user turns;
    consecutive turns of one role are merged (so parallel tool results share one user turn),
    since the API wants user and assistant to alternate."""
    system: list[str] = []
    turns: list[wire.MessageParam] = []
    for message in messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        role: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1].role == role:
            previous = turns[-1].content
            before = [wire.TextBlock(previous)] if isinstance(previous, str) else previous
            turns[-1] = wire.MessageParam(role, [*before, *blocks])
        elif len(blocks) == 1 and isinstance(blocks[0], wire.TextBlock):
            turns.append(wire.MessageParam(role, blocks[0].text))  # plain text stays a string
        else:
            turns.append(wire.MessageParam(role, blocks))
    return ("\n\n".join(system) if system else None), turns


def _tools(request: ChatRequest) -> list[wire.Tool] | None:
    if not request.tools:
        return None
    # Anthropic requires an object schema; a function without parameters takes no arguments.
    return [wire.Tool(t.name, t.parameters or {"type": "object", "properties": {}}, t.description)
            for t in request.tools]


_CHOICE_TYPES: dict[str, Literal["auto", "any", "tool", "none"]] = {
    "auto": "auto", "required": "any", "function": "tool", "none": "none"}


def _tool_choice(request: ChatRequest) -> wire.ToolChoice | None:
    choice = request.tool_choice
    serial = True if request.parallel_tool_calls is False else None
    if choice is None:
        return wire.ToolChoice("auto", disable_parallel_tool_use=True) if serial and request.tools else None
    kind = _CHOICE_TYPES[choice.type]
    return wire.ToolChoice(kind, choice.name if kind == "tool" else None,
                           serial if kind != "none" else None)


def _thinking(request: ChatRequest, model: str) -> wire.ThinkingEnabled | wire.ThinkingAdaptive | None:
    thinking = request.thinking
    if thinking is None or thinking.type == "disabled":
        return None  # Anthropic's default is no thinking: nothing to send
    if thinking.type == "adaptive" or adaptive_only(model) or thinking.budget_tokens is None:
        return wire.ThinkingAdaptive()
    return wire.ThinkingEnabled(thinking.budget_tokens)  # `level` is a hint for budget-less providers


def to_wire(request: ChatRequest, target: Target, version: str) -> wire.MessagesRequest:
    """The Messages body for one call (the fan-out of prompts and `n` is done before this).
    Spec defaults count as unset and are not sent (the orq SDK sends them explicitly)."""
    gone = dropped(request, target.model, version)
    system, messages = _messages(request.messages)
    # Whitespace-only stop sequences are a 400 at Anthropic and can never match model text anyway.
    stops = [s for s in request.stop_sequences if s.strip()]
    return wire.MessagesRequest(
        model=target.model,
        max_tokens=max_tokens_of(request),
        messages=messages,
        system=system,
        stop_sequences=stops or None,
        temperature=request.temperature if is_set(request, "temperature") and "temperature" not in gone else None,
        top_p=request.top_p if is_set(request, "top_p") and "top_p" not in gone else None,
        metadata=wire.Metadata(request.user) if request.user else None,
        thinking=_thinking(request, target.model),
        tools=_tools(request),
        tool_choice=_tool_choice(request),
        stream=request.stream,
    )


# -- response -------------------------------------------------------------------------------------------
def usage_of(usage: wire.Usage | wire.DeltaUsage, input_tokens: int) -> Usage:
    """OpenAI's arithmetic: prompt tokens include cache reads and writes (Anthropic counts them
    apart), and completion tokens include thinking (Anthropic's output_tokens already do; it does
    not report the thinking share, so `reasoning_tokens` stays absent)."""
    created = usage.cache_creation_input_tokens or 0
    read = usage.cache_read_input_tokens or 0
    prompt = input_tokens + created + read
    details: dict[str, int] = {}
    if read:
        details["cached_tokens"] = read
    if created:
        details["cache_creation_tokens"] = created
    return Usage(prompt_tokens=prompt, completion_tokens=usage.output_tokens,
                 total_tokens=prompt + usage.output_tokens, prompt_tokens_details=details or None)


def result_of(message: wire.Message, target: Target) -> Result:
    """A Message as one choice: text blocks joined, thinking kept apart as reasoning."""
    text: list[str] = []
    reasoning: list[str] = []
    signature: list[str] = []
    redacted: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            if block.text is None:
                raise protocol_error(target.label, "a text block without text")
            text.append(block.text)
        elif block.type == "thinking":
            if block.thinking is None:
                raise protocol_error(target.label, "a thinking block without thinking")
            reasoning.append(block.thinking)
            signature.append(block.signature or "")
        elif block.type == "redacted_thinking":
            redacted.append(block.data or "")
        elif block.type == "tool_use":
            if not block.id or not block.name or not isinstance(block.input, dict):
                raise protocol_error(target.label, "a tool_use block without id, name or input object")
            calls.append(ToolCall(block.id, block.name, _encode(block.input).decode()))
        # Other blocks (server tools and their results, …) carry no completion text.
    choice = Choice(
        index=0,
        text="".join(text),
        finish_reason=finish_reason(message.stop_reason),
        reasoning="".join(reasoning) if reasoning else None,
        reasoning_signature="".join(signature) or None,
        redacted_reasoning="".join(redacted) or None,
        tool_calls=calls or None,
    )
    return Result(id=message.id, created=int(time.time()), model=message.model or target.model, choices=[choice],
                  usage=usage_of(message.usage, message.usage.input_tokens))


# -- errors ---------------------------------------------------------------------------------------------
_error_decoder = msgspec.json.Decoder(wire.ErrorEnvelope)

# Anthropic's error types where orq has a name for the same thing; the broad ones
# (invalid_request_error, api_error, …) say no more than the status and take orq's name for it;
# the specific ones (billing_error, request_too_large, any new type) are kept as they are.
_ORQ_CODES: dict[str, str | None] = {
    "rate_limit_error": ErrorCode.rate_limit_exceeded.value,
    "overloaded_error": ErrorCode.provider_overloaded.value,
    "timeout_error": ErrorCode.provider_timeout.value,
    "invalid_request_error": None,
    "authentication_error": None,
    "permission_error": None,
    "not_found_error": None,
    "api_error": None,
}
# The status an error type stands for when it arrives in a stream that already answered 200.
_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
OVERLOADED = 529  # Anthropic's own status; clients get 503, which every SDK knows to retry


def _code(error_type: str) -> str | None:
    return _ORQ_CODES.get(error_type, error_type or None)


def error_of(target: Target, status: int, body: wire.ErrorBody, wait: float | None = None) -> UpstreamError:
    status = 503 if status == OVERLOADED else status
    message = body.message or f"{target.label}: HTTP {status}"
    return status_error(target.label, status, message, code=_code(body.type), retry_after=wait)


def error_from(target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """An error status: Anthropic's message kept, its type as our code where it is specific."""
    wait = retry_after(headers)
    try:
        body = _error_decoder.decode(raw).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = raw[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
        return error_of(target, status, wire.ErrorBody(message=f"{target.label}: {text}"), wait)
    return error_of(target, status, body, wait)


def error_event(target: Target, body: wire.ErrorBody) -> UpstreamError:
    """An `event: error` after HTTP 200: the status its type stands for (502 when unknown)."""
    return error_of(target, _TYPE_STATUS.get(body.type, 502), body)
