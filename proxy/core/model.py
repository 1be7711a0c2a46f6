"""The canonical model every surface translates to and every connector translates from.

Chat-shaped: a legacy completion is one user message, and keeps its raw `prompt` beside it so
that completion-native upstreams still receive exactly what the client wrote (no chat template
imposed on it). Results and stream deltas carry answer text, reasoning and usage in one neutral
form, which is also what the cache stores (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "content_filter", "tool_calls"})


class Struct(msgspec.Struct, omit_defaults=True):
    """Canonical structs leave unset fields out when encoded (cache entries stay small)."""


# -- request -------------------------------------------------------------------------------------------
class TextPart(Struct, tag_field="type", tag="text"):
    text: str


class ImagePart(Struct, tag_field="type", tag="image_url"):
    url: str  # data: or https:
    detail: str | None = None


ContentPart = TextPart | ImagePart


class ToolCall(Struct):
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolSpec(Struct):
    """A function the model may call."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema, passed on as written
    strict: bool | None = None


class ToolChoice(Struct):
    type: Literal["none", "auto", "required", "function"]
    name: str | None = None  # with type "function": the one the model must call


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class Message(Struct):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The text of the content, parts joined (images have none)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class Thinking(Struct):
    """`thinking` from the request: disabled, enabled with a budget, or adaptive; a level is a
    hint some providers take instead of a budget."""

    type: Literal["disabled", "enabled", "adaptive"]
    budget_tokens: int | None = None
    level: Literal["low", "medium", "high"] | None = None


class ChatRequest(Struct):
    """What the client asked for, independent of surface and provider.

    Fields left None are unset: providers apply their own defaults. A surface normalises a value
    equal to the spec's default to None (the orq SDK sends its defaults explicitly), so a
    provider that lacks a parameter is only refused when the client really asked for it.
    """

    messages: list[Message]
    # The raw legacy-completion prompt: set on the completions surface only; completion-native
    # upstreams send it as it is, chat-native ones use `messages` (the prompt as one user message).
    prompt: str | list[str] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None  # as the client wrote it; `stop_sequences` gives a list
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    echo: bool | None = None
    thinking: Thinking | None = None
    user: str | None = None
    stream: bool = False
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    reasoning_effort: Literal["none", "instant", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    metadata: dict[str, str] | None = None
    # Fields outside our schema, as the client sent them: passed through to OpenAI-compatible
    # upstreams, refused with a 400 by providers that cannot take them (README, "Parameters").
    extras: dict[str, Any] | None = None

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else self.stop

    @property
    def prompts(self) -> list[str]:
        """The legacy prompt as a list (one entry for a string prompt or a chat)."""
        if isinstance(self.prompt, list):
            return self.prompt
        if self.prompt is not None:
            return [self.prompt]
        return [""]


def with_prompt(request: ChatRequest, prompt: str | list[str]) -> ChatRequest:
    """A legacy-completion request with its prompt replaced (templating, knowledge): the raw
    prompt and the one user message it stands for change together."""
    text = prompt if isinstance(prompt, str) else "\n".join(prompt)
    return msgspec.structs.replace(request, prompt=prompt, messages=[Message("user", text)])


# Every canonical request field a provider's parameter table must decide on (tests check it).
REQUEST_FIELDS: tuple[str, ...] = ChatRequest.__struct_fields__


# -- result ---------------------------------------------------------------------------------------------
class Usage(Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0  # answer and reasoning tokens together, as OpenAI counts them
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None  # reasoning_tokens lives here

    @property
    def reasoning_tokens(self) -> int:
        details = self.completion_tokens_details
        value = details.get("reasoning_tokens") if details else None
        return value if isinstance(value, int) else 0


def usage_of(prompt: int, completion: int, reasoning: int = 0) -> Usage:
    """Usage with OpenAI's arithmetic: completion includes reasoning, total is the sum."""
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        completion_tokens_details={"reasoning_tokens": reasoning} if reasoning else None,
    )


def add_usage(a: Usage | None, b: Usage | None) -> Usage | None:
    """Two calls' usage summed (a fan-out of `n` or of a prompt list)."""
    if a is None or b is None:
        return a or b
    return usage_of(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                    a.reasoning_tokens + b.reasoning_tokens)


class Choice(Struct):
    index: int
    text: str = ""
    finish_reason: FinishReason = "stop"
    reasoning: str | None = None
    reasoning_signature: str | None = None
    redacted_reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    logprobs: Any = None  # the provider's own logprobs object, passed on as it is


class Result(Struct):
    """A whole answer from one provider call (or a fan-out of several)."""

    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


# -- streaming --------------------------------------------------------------------------------------------
class ToolCallDelta(Struct):
    """A piece of one tool call: the first carries its id and name, later ones more arguments."""

    index: int  # which call of the choice
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class Delta(Struct):
    """One increment of one choice, or (index -1) the usage at the end of a stream."""

    index: int = 0
    text: str = ""
    reasoning: str | None = None
    reasoning_signature: str | None = None
    redacted_reasoning: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    logprobs: Any = None
    finish_reason: FinishReason | None = None  # set on the choice's last delta
    usage: Usage | None = None


class StreamHead(Struct):
    """What a stream's chunks share: set once, from the provider's first event."""

    id: str
    created: int
    model: str
    system_fingerprint: str | None = None


def assemble(head: StreamHead, deltas: list[Delta]) -> Result:
    """A stream's deltas folded into the whole answer (what a cache stores and replays)."""
    texts: dict[int, list[str]] = {}
    reasoning: dict[int, list[str]] = {}
    signatures: dict[int, str] = {}
    redacted: dict[int, str] = {}
    reasons: dict[int, FinishReason] = {}
    calls: dict[int, dict[int, list[str]]] = {}  # choice → call index → [id, name, arguments...]
    usage: Usage | None = None
    for delta in deltas:
        if delta.usage is not None:
            usage = delta.usage  # cumulative where providers report it twice: the last one counts
        if delta.index < 0:
            continue
        texts.setdefault(delta.index, []).append(delta.text)
        if delta.reasoning:
            reasoning.setdefault(delta.index, []).append(delta.reasoning)
        if delta.reasoning_signature:
            signatures[delta.index] = signatures.get(delta.index, "") + delta.reasoning_signature
        if delta.redacted_reasoning:
            redacted[delta.index] = redacted.get(delta.index, "") + delta.redacted_reasoning
        if delta.finish_reason is not None:
            reasons[delta.index] = delta.finish_reason
        for piece in delta.tool_calls or ():
            call = calls.setdefault(delta.index, {}).setdefault(piece.index, ["", ""])
            call[0] = piece.id or call[0]
            call[1] = piece.name or call[1]
            call.append(piece.arguments)
    choices = [
        Choice(index=i, text="".join(texts[i]), finish_reason=reasons.get(i, "stop"),
               reasoning="".join(reasoning[i]) if i in reasoning else None,
               reasoning_signature=signatures.get(i), redacted_reasoning=redacted.get(i),
               tool_calls=[ToolCall(c[0], c[1], "".join(c[2:])) for _, c in sorted(calls[i].items())]
               if i in calls else None)
        for i in sorted(texts)
    ]
    return Result(id=head.id, created=head.created, model=head.model, choices=choices, usage=usage,
                  system_fingerprint=head.system_fingerprint)
