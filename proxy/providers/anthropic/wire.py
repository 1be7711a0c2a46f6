"""Anthropic's Messages API (`POST /v1/messages`) wire format: what we send and what we accept
back — the Message object, the SSE events and the error envelope.

Strict where the shape is documented and we depend on it (a Message has an id, content blocks
and usage), lenient where Anthropic says it grows: unknown content block, delta and event types
are tolerated and skipped, not treated as a broken answer.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Struct(msgspec.Struct, omit_defaults=True):
    """Unset optional fields are left out of what we send."""


# -- request --------------------------------------------------------------------------------------------
class TextBlock(Struct, tag_field="type", tag="text"):
    text: str


class ToolUseBlock(Struct, tag_field="type", tag="tool_use"):
    """A tool call the assistant made, replayed in a later turn."""

    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(Struct, tag_field="type", tag="tool_result"):
    """The answer to a tool call, in the user turn after it."""

    tool_use_id: str
    content: str | None = None


ContentBlock = TextBlock | ToolUseBlock | ToolResultBlock


class MessageParam(Struct):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Tool(Struct):
    name: str
    input_schema: dict[str, Any]  # a JSON Schema of type object
    description: str | None = None


class ToolChoice(Struct):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None  # with type "tool"
    disable_parallel_tool_use: bool | None = None  # not with type "none"


class ThinkingEnabled(Struct, tag_field="type", tag="enabled"):
    budget_tokens: int


class ThinkingAdaptive(Struct, tag_field="type", tag="adaptive"):
    pass


class Metadata(Struct):
    user_id: str


class MessagesRequest(Struct):
    model: str
    max_tokens: int  # required by the API
    messages: list[MessageParam]
    system: str | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: Metadata | None = None
    thinking: ThinkingEnabled | ThinkingAdaptive | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    stream: bool = False


# -- response -------------------------------------------------------------------------------------------
class Block(msgspec.Struct):
    """A content block of any type; the fields of the types we read are optional here and
    checked where they are read (translate.py), so new block types pass through unread."""

    type: str
    text: str | None = None  # text
    thinking: str | None = None  # thinking
    signature: str | None = None  # thinking
    data: str | None = None  # redacted_thinking
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    input: Any = None  # tool_use: an object (empty in a stream's content_block_start)


class Usage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(msgspec.Struct):
    id: str
    type: Literal["message"]
    content: list[Block]
    usage: Usage
    model: str = ""
    role: Literal["assistant"] = "assistant"
    stop_reason: str | None = None
    stop_sequence: str | None = None


class ErrorBody(msgspec.Struct):
    type: str = ""
    message: str = ""


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody
    type: str = "error"


# -- stream ---------------------------------------------------------------------------------------------
class Delta(msgspec.Struct):
    """`content_block_delta.delta` (text_delta, thinking_delta, signature_delta, input_json_delta,
    …) and `message_delta.delta` (stop_reason) in one lenient shape."""

    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    partial_json: str | None = None  # input_json_delta
    stop_reason: str | None = None
    stop_sequence: str | None = None


class DeltaUsage(msgspec.Struct):
    """`message_delta.usage`: cumulative counts (assign them, never add them); recent streams
    repeat the input counts here too."""

    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class StartMessage(msgspec.Struct):
    """`message_start.message`: a Message with empty content."""

    id: str
    usage: Usage
    model: str = ""


class Event(msgspec.Struct):
    """One SSE event's data; which fields must be present depends on `type` (stream.py)."""

    type: str
    index: int | None = None
    message: StartMessage | None = None  # message_start
    content_block: Block | None = None  # content_block_start
    delta: Delta | None = None  # content_block_delta, message_delta
    usage: DeltaUsage | None = None  # message_delta
    error: ErrorBody | None = None  # error
