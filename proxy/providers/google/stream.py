"""Gemini's `streamGenerateContent?alt=sse` → canonical deltas.

Each event is a whole GenerateContentResponse holding the next piece of each candidate. Thought
parts become `reasoning`, a signature `reasoning_signature`; neither is answer text. Every event
repeats the usage so far, so only the last one counts: it is emitted once, when the stream ends.
A function call comes whole in one part: it is one tool-call delta with all its arguments.
A blocked prompt is one event with `promptFeedback.blockReason` and no candidates.
"""

from __future__ import annotations

import time

import msgspec

from proxy.core.errors import protocol_error
from proxy.core.model import Delta, StreamHead, Usage
from proxy.core.target import Target
from proxy.providers.google import wire
from proxy.providers.google.translate import (
    blocked,
    error_in_body,
    finish_reason,
    tool_call,
    usage_of,
)

_decoder = msgspec.json.Decoder(wire.GenerateContentResponse)


class DeltaDecoder:
    """Feed the `data` of each SSE event; take canonical deltas out. Raises UpstreamError on an
    error event or an event that is not Gemini's shape. `head` is known from the first event."""

    def __init__(self, target: Target, n: int, request_id: str) -> None:
        self.target = target
        self.n = n
        self.request_id = request_id
        self.head: StreamHead | None = None
        self.usage: Usage | None = None
        self.output: list[Delta] = []
        self.content_seen = False
        self.unfinished = set(range(n))  # candidates still owed a finishReason
        self.calls: dict[int, int] = {}  # candidate → function calls so far

    @property
    def finished(self) -> bool:
        return not self.unfinished

    def take(self) -> list[Delta]:
        out = self.output
        self.output = []
        return out

    def feed(self, events: list[bytes]) -> None:
        for event in events:
            try:
                response = _decoder.decode(event)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise protocol_error(self.target.label, "undecodable stream event") from None
            if response.error is not None:
                raise error_in_body(self.target, response.error)
            self._response(response)

    def _response(self, response: wire.GenerateContentResponse) -> None:
        if self.head is None:
            self.head = StreamHead(response.response_id or self.request_id, int(time.time()),
                                   response.model_version or self.target.model)
        if response.usage_metadata is not None:
            self.usage = usage_of(response.usage_metadata)
        if blocked(response):
            self.output += [Delta(index=i, finish_reason="content_filter") for i in sorted(self.unfinished)]
            self.unfinished.clear()
            self.content_seen = True
            return
        for candidate in response.candidates:
            delta = Delta(index=candidate.index)
            for part in candidate.content.parts if candidate.content is not None else []:
                if part.text:
                    if part.thought:
                        delta.reasoning = (delta.reasoning or "") + part.text
                    else:
                        delta.text += part.text
                if part.function_call is not None:  # its signature rides in the call's id
                    k = self.calls.get(candidate.index, 0)
                    self.calls[candidate.index] = k + 1
                    piece = tool_call(part, k, candidate.index, response, self.request_id)
                    delta.tool_calls = [*(delta.tool_calls or ()), piece]
                elif part.thought_signature:
                    delta.reasoning_signature = (delta.reasoning_signature or "") + part.thought_signature
            if candidate.finish_reason is not None:
                delta.finish_reason = finish_reason(candidate.finish_reason, candidate.index in self.calls)
                self.unfinished.discard(candidate.index)
            if delta.text or delta.reasoning or delta.reasoning_signature or delta.tool_calls or delta.finish_reason:
                self.output.append(delta)
                self.content_seen = True

    def end(self) -> None:
        """The upstream closed the stream: every candidate must have finished (else it was cut
        short), and the last usage reported is the stream's."""
        if self.unfinished:
            raise protocol_error(self.target.label, "stream ended before every candidate finished")
        if self.usage is not None:
            self.output.append(Delta(index=-1, usage=self.usage))
