"""Response and stream-chunk structs of the spec (the same object shape for both)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "content_filter", "tool_calls"})


class Choice(msgspec.Struct):
    text: str
    index: int
    finish_reason: FinishReason


class Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class Completion(msgspec.Struct, omit_defaults=True):
    """A whole completion, or (with the same fields) one SSE chunk of one."""

    id: str
    choices: list[Choice]
    created: int
    model: str
    object: str  # required by the spec, so not a default (defaults are omitted when encoding)
    system_fingerprint: str | None = None
    usage: Usage | None = None


encoder = msgspec.json.Encoder()
