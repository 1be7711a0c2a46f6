"""OpenAI's `/v1/completions` wire format: what we send and what we accept back."""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.core.model import Usage


class StreamOptions(msgspec.Struct):
    include_usage: bool = True  # so streamed responses report tokens too


class UpstreamRequest(msgspec.Struct, omit_defaults=True):
    model: str
    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    echo: bool | None = None
    frequency_penalty: float | None = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    user: str | None = None


class UpstreamChoice(msgspec.Struct):
    text: str = ""
    index: int = 0
    finish_reason: str | None = None
    logprobs: Any = None


class UpstreamErrorBody(msgspec.Struct):
    message: str = ""
    type: str | None = None
    param: str | None = None
    code: Any = None


class ErrorEnvelope(msgspec.Struct):
    error: UpstreamErrorBody


class UpstreamCompletion(msgspec.Struct):
    """Lenient on purpose: OpenAI-compatible servers differ in what they fill in."""

    id: str = ""
    choices: list[UpstreamChoice] = msgspec.field(default_factory=list)
    created: int = 0
    model: str = ""
    object: str = "text_completion"
    system_fingerprint: str | None = None
    usage: Usage | None = None
    # OpenAI reports a failure mid-stream as `data: {"error": {...}}` (some servers as a bare
    # string), which the defaults above would otherwise let pass as an empty chunk.
    error: UpstreamErrorBody | str | None = None
