"""Gemini's `generateContent` wire format: what we send and what we accept back.

Field names are Gemini's camelCase (`rename="camel"`). Response structs are lenient about what
they do not use (citations, safety ratings, …) and strict about the shape of what they do: a
body that is not a GenerateContentResponse is a protocol error (a 502).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class _Out(msgspec.Struct, rename="camel", omit_defaults=True):
    """Structs we send: unset fields are left out, so Gemini applies its own defaults."""


class FunctionCall(_Out):
    name: str
    args: dict[str, Any]


class FunctionResponse(_Out):
    name: str
    response: dict[str, Any]


class Part(_Out):
    """One of text, a function call (model turns) or a function's result (user turns)."""

    text: str | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought_signature: str | None = None  # given back on the functionCall part it came with


class Content(_Out):
    parts: list[Part]
    role: Literal["user", "model"] | None = None


class ThinkingConfig(_Out):
    thinking_budget: int | None = None  # -1: dynamic; 0: off (where the model allows it)
    thinking_level: str | None = None  # Gemini 3: "low" | "medium" | "high"
    include_thoughts: bool | None = None  # thought summaries come back as `thought: true` parts


class GenerationConfig(_Out):
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None
    candidate_count: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    thinking_config: ThinkingConfig | None = None
    response_mime_type: str | None = None  # "application/json" for JSON output
    # JSON Schema as written; `responseSchema` would take only Gemini's OpenAPI subset.
    response_json_schema: dict[str, Any] | None = None


class FunctionDeclaration(_Out):
    name: str
    description: str | None = None
    # JSON Schema as written (OpenAI's `parameters`); `parameters` would take only the OpenAPI subset.
    parameters_json_schema: dict[str, Any] | None = None


class Tool(_Out):
    function_declarations: list[FunctionDeclaration]


class FunctionCallingConfig(_Out):
    mode: Literal["AUTO", "ANY", "NONE"]
    allowed_function_names: list[str] | None = None  # with ANY only


class ToolConfig(_Out):
    function_calling_config: FunctionCallingConfig


class GenerateContentRequest(_Out):
    contents: list[Content]
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None


# -- answers --------------------------------------------------------------------------------------------
class _In(msgspec.Struct, rename="camel"):
    """Structs we read: fields we do not use are ignored."""


class ResponseFunctionCall(_In):
    name: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    id: str | None = None  # set by some models; else the proxy makes one up


class ResponsePart(_In):
    text: str | None = None
    function_call: ResponseFunctionCall | None = None
    thought: bool = False  # a thought summary: reasoning, never answer text
    thought_signature: str | None = None  # opaque, base64: may come alone in a part


class ResponseContent(_In):
    parts: list[ResponsePart] = msgspec.field(default_factory=list)
    role: str | None = None


class Candidate(_In):
    content: ResponseContent | None = None
    finish_reason: str | None = None
    index: int = 0  # proto3 JSON leaves a zero out


class PromptFeedback(_In):
    block_reason: str | None = None  # sent only in the first stream chunk, with no candidates


class UsageMetadata(_In):
    prompt_token_count: int = 0
    candidates_token_count: int = 0  # the answer only: thoughts are counted apart
    thoughts_token_count: int = 0
    total_token_count: int = 0  # prompt + candidates + thoughts (+ tool-use prompt)
    cached_content_token_count: int = 0


class ErrorBody(_In):
    """google.rpc.Status as the API sends it: `{"error": {code, message, status, details}}`."""

    code: int = 0
    message: str = ""
    status: str = ""
    details: list[dict[str, Any]] = msgspec.field(default_factory=list)


class ErrorEnvelope(_In):
    error: ErrorBody


class GenerateContentResponse(_In):
    candidates: list[Candidate] = msgspec.field(default_factory=list)
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    # An error mid-stream arrives as its own event, `data: {"error": {...}}`.
    error: ErrorBody | None = None
