"""Response and stream-chunk structs of the completions spec (the same object shape for both)."""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.core.model import FINISH_REASONS, FinishReason, Usage

__all__ = ["FINISH_REASONS", "Choice", "Completion", "FinishReason", "Usage", "encoder"]


class Choice(msgspec.Struct, omit_defaults=True):
    text: str
    index: int
    finish_reason: FinishReason
    logprobs: Any = None  # the provider's, when the client asked for them (an OpenAI-compatible extra)


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
