"""`reasoning_effort` (OpenAI's name) as a thinking setting, for providers whose thinking is a
token budget or a level (docs/providers.md, "reasoning_effort"). An explicit `thinking` wins."""

from __future__ import annotations

from proxy.core.model import ChatRequest, Thinking

# effort → (budget tokens, level); None: thinking off.
EFFORT: dict[str, tuple[int, str] | None] = {
    "none": None,
    "instant": None,
    "minimal": (1024, "low"),
    "low": (2048, "low"),
    "medium": (8192, "medium"),
    "high": (16384, "high"),
    "xhigh": (24576, "high"),
    "max": (32768, "high"),
}


def thinking_for(request: ChatRequest) -> Thinking | None:
    """The request's `thinking`, else its `reasoning_effort` as one, else None."""
    if request.thinking is not None or request.reasoning_effort is None:
        return request.thinking
    setting = EFFORT[request.reasoning_effort]
    if setting is None:
        return Thinking("disabled")
    budget, level = setting
    return Thinking("enabled", budget, level)  # type: ignore[arg-type]
