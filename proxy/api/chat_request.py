"""The chat surface's request (`/v2/router/chat/completions`, `/v1/chat/completions`): OpenAI's
chat body plus the routing fields and `orq` block every surface shares.

Messages and content parts are tagged unions, so a wrong shape is a 400 naming its path
(`messages[2].content[0].type`). Bounds keep one request's cost finite: at most 2,048 messages,
256 parts a message, 128 tools.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from proxy.api.request import Base, SamplingRequest, StreamOptions

MessageCount = Meta(min_length=1, max_length=2048)
PartCount = Meta(min_length=1, max_length=256)
ToolName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class TextPart(Base, tag_field="type", tag="text"):
    text: str


class ImageUrl(Base):
    url: Annotated[str, Meta(pattern=r"^(data:|https?://)")]
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Base, tag_field="type", tag="image_url"):
    image_url: ImageUrl


UserPart = TextPart | ImagePart


class FunctionCall(Base):
    name: ToolName
    arguments: str  # JSON text, as the model wrote it


class ToolCall(Base):
    id: Annotated[str, Meta(min_length=1)]
    function: FunctionCall
    type: Literal["function"] = "function"


class SystemMessage(Base, tag_field="role", tag="system"):
    content: str | Annotated[list[TextPart], PartCount]
    name: str | None = None


class DeveloperMessage(Base, tag_field="role", tag="developer"):
    content: str | Annotated[list[TextPart], PartCount]
    name: str | None = None


class UserMessage(Base, tag_field="role", tag="user"):
    content: str | Annotated[list[UserPart], PartCount]
    name: str | None = None


class AssistantMessage(Base, tag_field="role", tag="assistant"):
    content: str | Annotated[list[TextPart], PartCount] | None = None
    name: str | None = None
    tool_calls: Annotated[list[ToolCall], Meta(max_length=128)] | None = None


class ToolMessage(Base, tag_field="role", tag="tool"):
    content: str | Annotated[list[TextPart], PartCount]
    tool_call_id: Annotated[str, Meta(min_length=1)]


ChatMessage = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDefinition(Base):
    name: ToolName
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema, passed on as written
    strict: bool | None = None


class Tool(Base):
    function: FunctionDefinition
    type: Literal["function"] = "function"


class NamedFunction(Base):
    name: ToolName


class NamedToolChoice(Base):
    function: NamedFunction
    type: Literal["function"] = "function"


class JsonSchema(Base):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextFormat(Base, tag_field="type", tag="text"):
    pass


class JsonObjectFormat(Base, tag_field="type", tag="json_object"):
    pass


class JsonSchemaFormat(Base, tag_field="type", tag="json_schema"):
    json_schema: JsonSchema


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaFormat


class ChatCompletionRequest(SamplingRequest, forbid_unknown_fields=True):
    """Unknown top-level fields are set aside as `extras` (proxy.api.decode), as on completions."""

    messages: Annotated[list[ChatMessage], MessageCount] | None = None  # required: checked after decoding
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[Tool], Meta(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["none", "instant", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None


CHAT_DEFAULTS: dict[str, Any] = {
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "temperature": 1.0,
    "top_p": 1.0,
    "n": 1,
}

