"""The canonical model ↔ Gemini's GenerateContent objects, and Gemini's errors → ours."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from proxy.core.errors import ProxyError, UpstreamError, protocol_error, status_error
from proxy.core.model import (
    ChatRequest,
    Choice,
    FinishReason,
    ImagePart,
    Message,
    Result,
    Thinking,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from proxy.core.target import Target
from proxy.providers.effort import thinking_for
from proxy.providers.google import wire
from proxy.providers.google.params import (
    ALWAYS_THINKING,
    LEVEL_MODELS,
    NEVER_THINKING,
    model_family,
)

_encode = msgspec.json.Encoder().encode
_decode_json = msgspec.json.decode
_error_decoder = msgspec.json.Decoder(wire.ErrorEnvelope)

# Gemini's finish reasons that mean "a filter stopped it" (README's safety mapping).
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                       "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})

# Separates a tool call id from the thoughtSignature of its functionCall part (base64 never has "~").
SIGNATURE_MARK = "~sig~"


# -- request --------------------------------------------------------------------------------------------
def thinking_config(thinking: Thinking | None, model: str) -> wire.ThinkingConfig | None:
    """`thinking` for this model: a level where the model takes one (Gemini 3), else a budget;
    adaptive is the dynamic budget (-1); disabled is budget 0 where the model can stop thinking,
    nothing where it cannot or never thinks."""
    if thinking is None:
        return None
    if thinking.type == "disabled":
        if model_family(model, ALWAYS_THINKING + NEVER_THINKING):
            return None
        return wire.ThinkingConfig(thinking_budget=0)
    if thinking.type == "adaptive":
        return wire.ThinkingConfig(thinking_budget=-1, include_thoughts=True)
    if thinking.level is not None and model_family(model, LEVEL_MODELS):
        # Gemini refuses a level and a budget together; the spec says the budget yields.
        return wire.ThinkingConfig(thinking_level=thinking.level, include_thoughts=True)
    return wire.ThinkingConfig(thinking_budget=thinking.budget_tokens, include_thoughts=True)


def _arguments(text: str, param: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Gemini's `functionCall.args` is."""
    try:
        args = _decode_json(text or "{}")
    except msgspec.DecodeError:
        args = None
    if not isinstance(args, dict):
        raise ProxyError(400, "Provider type 'google' needs a tool call's arguments to be a JSON object",
                         param=param)
    return args


def _parts(message: Message, i: int, calls: dict[str, str]) -> list[wire.Part]:
    """A message's parts: text; an assistant's tool calls as `functionCall`; a tool result as
    `functionResponse` under the name of the call it answers (Gemini matches them by name)."""
    if message.role == "tool":
        name = calls.get(message.tool_call_id or "")
        if name is None:
            raise ProxyError(400, f"`tool_call_id` {message.tool_call_id!r} names no earlier assistant tool call",
                             param=f"messages[{i}].tool_call_id")
        return [wire.Part(function_response=wire.FunctionResponse(name, {"result": message.text()}))]
    text = message.text()
    parts = [wire.Part(text)] if text or not message.tool_calls else []
    for j, call in enumerate(message.tool_calls or ()):
        calls[call.id] = call.name
        args = _arguments(call.arguments, f"messages[{i}].tool_calls[{j}].function.arguments")
        signature = call.id.partition(SIGNATURE_MARK)[2] or None
        parts.append(wire.Part(function_call=wire.FunctionCall(call.name, args), thought_signature=signature))
    return parts


def _contents(request: ChatRequest) -> tuple[list[wire.Content], wire.Content | None]:
    contents: list[wire.Content] = []
    system: list[wire.Part] = []
    calls: dict[str, str] = {}  # tool call id → function name, from the assistant turns so far
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list) and any(isinstance(p, ImagePart) for p in message.content):
            raise ProxyError(400, "Provider type 'google' takes text content only", param="messages")
        if message.role in ("system", "developer"):
            system.append(wire.Part(message.text()))
            continue
        parts = _parts(message, i, calls)
        role: Literal["user", "model"] = "model" if message.role == "assistant" else "user"
        if contents and contents[-1].role == role:  # Gemini wants turns to alternate
            contents[-1].parts.extend(parts)
        else:
            contents.append(wire.Content(parts, role))
    return contents, wire.Content(system) if system else None


_MODES: dict[str, Literal["AUTO", "ANY", "NONE"]] = {"auto": "AUTO", "required": "ANY", "function": "ANY",
                                                     "none": "NONE"}


def _tools(request: ChatRequest) -> tuple[list[wire.Tool] | None, wire.ToolConfig | None]:
    """`tools` as one Tool of function declarations; `tool_choice` as functionCallingConfig (a
    named function is ANY restricted to that name). No tools: nothing to choose from, so neither."""
    if not request.tools:
        return None, None
    declarations = [wire.FunctionDeclaration(t.name, t.description, t.parameters) for t in request.tools]
    choice = request.tool_choice
    config = None
    if choice is not None:
        names = [choice.name] if choice.type == "function" and choice.name else None
        config = wire.ToolConfig(wire.FunctionCallingConfig(_MODES[choice.type], names))
    return [wire.Tool(declarations)], config


def _output_format(request: ChatRequest) -> tuple[str | None, dict[str, Any] | None]:
    """`response_format` as responseMimeType and, for json_schema, responseJsonSchema."""
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None, None
    return "application/json", fmt.schema if fmt.type == "json_schema" else None


def request_body(request: ChatRequest, target: Target) -> bytes:
    contents, system = _contents(request)
    tools, tool_config = _tools(request)
    mime, schema = _output_format(request)
    stops = request.stop_sequences
    config = wire.GenerationConfig(
        max_output_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop_sequences=stops or None,
        candidate_count=request.n if request.n and request.n > 1 else None,
        seed=request.seed,
        presence_penalty=request.presence_penalty or None,  # 0 is the default: not sent
        frequency_penalty=request.frequency_penalty or None,
        thinking_config=thinking_config(thinking_for(request), target.model),
        response_mime_type=mime,
        response_json_schema=schema,
    )
    empty = config == wire.GenerationConfig()
    return _encode(wire.GenerateContentRequest(contents, system, tools, tool_config, None if empty else config))


# -- answers --------------------------------------------------------------------------------------------
def finish_reason(reason: str | None, called: bool = False) -> FinishReason:
    """Gemini ends a turn of function calls with STOP: a choice that called is `tool_calls`."""
    if reason in _FILTERED:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    if called:
        return "tool_calls"
    # STOP, and what the spec's four reasons have no place for (OTHER, LANGUAGE, …).
    return "stop"


def usage_of(meta: wire.UsageMetadata) -> Usage:
    """Thoughts are completion tokens (as OpenAI counts reasoning) and reported apart as well;
    the total is Gemini's own."""
    completion = meta.candidates_token_count + meta.thoughts_token_count
    total = meta.total_token_count or meta.prompt_token_count + completion
    return Usage(
        prompt_tokens=meta.prompt_token_count,
        completion_tokens=completion,
        total_tokens=total,
        completion_tokens_details={"reasoning_tokens": meta.thoughts_token_count}
        if meta.thoughts_token_count else None,
    )


def tool_call(part: wire.ResponsePart, k: int, candidate: int, response: wire.GenerateContentResponse,
              request_id: str) -> ToolCallDelta:
    """The k-th function call of a candidate, whole: its arguments are `args` as JSON text. An
    id Gemini leaves out is derived from the answer's id and the call's place, so it is the same
    wherever the answer is read (every stream event, a cache replay) and unique within it. The
    part's thoughtSignature rides in the id (clients send ids back verbatim): Gemini refuses a
    later turn whose function call has lost it."""
    assert part.function_call is not None
    call = part.function_call
    call_id = call.id
    if not call_id:
        seed = f"{response.response_id or request_id}:{candidate}:{k}"
        call_id = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
    if part.thought_signature:
        call_id += SIGNATURE_MARK + part.thought_signature
    return ToolCallDelta(k, call_id, call.name, _encode(call.args).decode())


def blocked(response: wire.GenerateContentResponse) -> bool:
    return response.prompt_feedback is not None and response.prompt_feedback.block_reason is not None


def result_of(response: wire.GenerateContentResponse, target: Target, n: int, request_id: str) -> Result:
    """A whole answer. A blocked prompt has no candidates: each of the `n` choices asked for is
    empty and filtered. An answer with neither is not Gemini's shape."""
    if blocked(response):
        choices = [Choice(index=i, finish_reason="content_filter") for i in range(n)]
    elif not response.candidates:
        raise protocol_error(target.label, "answer has no candidates and no promptFeedback")
    else:
        choices = []
        for candidate in sorted(response.candidates, key=lambda c: c.index):
            text: list[str] = []
            reasoning: list[str] = []
            signature: list[str] = []
            calls: list[ToolCall] = []
            for part in candidate.content.parts if candidate.content is not None else []:
                if part.text is not None:
                    (reasoning if part.thought else text).append(part.text)
                if part.function_call is not None:
                    piece = tool_call(part, len(calls), candidate.index, response, request_id)
                    calls.append(ToolCall(piece.id or "", piece.name or "", piece.arguments))
                elif part.thought_signature:
                    signature.append(part.thought_signature)
            choices.append(Choice(index=candidate.index, text="".join(text),
                                  finish_reason=finish_reason(candidate.finish_reason, bool(calls)),
                                  reasoning="".join(reasoning) if reasoning else None,
                                  reasoning_signature="".join(signature) if signature else None,
                                  tool_calls=calls or None))
    return Result(
        id=response.response_id or request_id,
        created=int(time.time()),
        model=response.model_version or target.model,
        choices=choices,
        usage=usage_of(response.usage_metadata) if response.usage_metadata is not None else None,
    )


# -- errors ---------------------------------------------------------------------------------------------
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def retry_after(body: wire.ErrorBody | None, headers: Mapping[str, str]) -> float | None:
    """google.rpc.RetryInfo's `retryDelay` ("37s"), else a `Retry-After` header in seconds."""
    for detail in body.details if body is not None else []:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DELAY.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match[1])
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _bad_key(body: wire.ErrorBody) -> bool:
    # Gemini answers a wrong API key with 400 INVALID_ARGUMENT: that is our credentials, not the
    # client's request, so it is reported like a 401 (a 502 naming the provider).
    if body.message.startswith("API key not valid"):
        return True
    return any(detail.get("reason") == "API_KEY_INVALID" for detail in body.details)


def error_from(target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """Gemini's `{"error": {code, message, status}}`, the HTTP status and message kept; orq's
    code names, not Google's status names, so clients see one vocabulary."""
    try:
        body = _error_decoder.decode(raw).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = raw[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
        return status_error(target.label, status, f"{target.label}: {text}", retry_after=retry_after(None, headers))
    if status == 400 and _bad_key(body):
        status = 401
    return status_error(target.label, status, body.message or f"{target.label}: HTTP {status}",
                        retry_after=retry_after(body, headers))


def error_in_body(target: Target, body: wire.ErrorBody) -> UpstreamError:
    """An error event in a stream (after HTTP 200): its `code` is the status it stands for."""
    status = body.code if 400 <= body.code <= 599 else 502
    return status_error(target.label, status, body.message or f"{target.label}: error from provider",
                        retry_after=retry_after(body, {}))
