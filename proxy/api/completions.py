"""The completions surface (`/v2/router/completions`): its request ↔ the canonical model, and
canonical results and deltas → its JSON objects and SSE chunks.

Reasoning has no place in a legacy completion: thinking text never reaches `choices[].text`;
reasoning tokens are reported in `usage.completion_tokens_details`.
"""

from __future__ import annotations

from typing import Any

from proxy.api.decode import decode_request
from proxy.api.request import (
    GENERATION_DEFAULTS,
    CompletionRequest,
    SamplingRequest,
    ThinkingAdaptive,
    ThinkingEnabled,
)
from proxy.api.request import Thinking as RequestThinking
from proxy.api.response import Choice, Completion, encoder
from proxy.api.surface import Surface
from proxy.core.model import ChatRequest, Delta, Message, Result, StreamHead, Thinking
from proxy.core.sse import frame

NAME = "completions"
WIRE = "openai.completions"  # the format a declared pass-through must already be in
OBJECT = "text_completion"


def thinking_of(value: RequestThinking | None) -> Thinking | None:
    if value is None:
        return None
    if isinstance(value, ThinkingEnabled):
        return Thinking("enabled", value.budget_tokens, value.thinking_level)
    return Thinking("adaptive" if isinstance(value, ThinkingAdaptive) else "disabled")


def sampling_of(request: SamplingRequest) -> dict[str, Any]:
    """The canonical fields every surface's request carries the same way."""
    return {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "n": request.n,
        "stop": request.stop,
        "seed": request.seed,
        "frequency_penalty": request.frequency_penalty,
        "presence_penalty": request.presence_penalty,
        "thinking": thinking_of(request.thinking),
        "user": request.user,
        "stream": request.stream,
    }


def to_canonical(request: CompletionRequest, extras: dict[str, Any] | None) -> ChatRequest:
    """The prompt as sent: templating and knowledge replace it later (core.model.with_prompt)."""
    prompt = request.prompt if request.prompt is not None else ""
    return ChatRequest(
        messages=[Message("user", prompt if isinstance(prompt, str) else "\n".join(prompt))],
        prompt=prompt, max_tokens=request.max_tokens, echo=request.echo, extras=extras, **sampling_of(request))


def completion_of(result: Result) -> Completion:
    return Completion(
        id=result.id,
        choices=[Choice(c.text, c.index, c.finish_reason, c.logprobs) for c in result.choices],
        created=result.created,
        model=result.model,
        object=OBJECT,
        system_fingerprint=result.system_fingerprint,
        usage=result.usage,
    )


def render(result: Result) -> bytes:
    return encoder.encode(completion_of(result))


def replay(result: Result) -> list[bytes]:
    """A whole answer as SSE frames (a cache hit on a stream): a chunk per choice, the usage on
    the last."""
    whole = completion_of(result)
    chunks = [
        Completion(id=whole.id, choices=[choice], created=whole.created, model=whole.model, object=OBJECT,
                   system_fingerprint=whole.system_fingerprint)
        for choice in whole.choices
    ] or [Completion(id=whole.id, choices=[], created=whole.created, model=whole.model, object=OBJECT,
                     system_fingerprint=whole.system_fingerprint)]
    chunks[-1].usage = whole.usage
    return [b"".join(frame(encoder.encode(chunk)) for chunk in chunks)]


class DeltaRenderer:
    """Canonical deltas → completion chunks. A choice's finishing chunk is held until the next
    one (or the end), so the usage that follows it rides on it: the final chunk carries both the
    real finish_reason and the usage, as the spec's stream schema wants."""

    def __init__(self, head: StreamHead) -> None:
        self.head = head
        self.held: Completion | None = None

    def _chunk(self, choices: list[Choice]) -> Completion:
        head = self.head
        return Completion(id=head.id, choices=choices, created=head.created, model=head.model, object=OBJECT,
                          system_fingerprint=head.system_fingerprint)

    def render(self, deltas: list[Delta]) -> bytes:
        out = bytearray()
        for delta in deltas:
            if delta.index < 0:  # the usage at the end of the stream
                if self.held is None:
                    self.held = self._chunk([])
                self.held.usage = delta.usage
                continue
            if not delta.text and delta.finish_reason is None:
                continue  # reasoning only: not part of a completion
            if self.held is not None:
                out += frame(encoder.encode(self.held))
                self.held = None
            chunk = self._chunk([Choice(delta.text, delta.index, delta.finish_reason or "stop", delta.logprobs)])
            if delta.finish_reason is not None:
                self.held = chunk
            else:
                out += frame(encoder.encode(chunk))
        return bytes(out)

    def finish(self) -> bytes:
        if self.held is None:
            return b""
        out = frame(encoder.encode(self.held))
        self.held = None
        return out


# The spec's defaults, which an omitted field stands for (the cache keys them alike).
DEFAULTS: dict[str, Any] = GENERATION_DEFAULTS

SURFACE = Surface(name=NAME, wire=WIRE, decode=decode_request, to_canonical=to_canonical, render=render, replay=lambda result, _request: replay(result),
                  renderer=lambda head, _request: DeltaRenderer(head), defaults=DEFAULTS)
