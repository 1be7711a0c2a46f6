"""Anthropic's SSE events → canonical deltas.

Event order: `message_start`, then per content block `content_block_start`,
`content_block_delta`*, `content_block_stop`, then `message_delta` (stop reason and usage) and
`message_stop`; `ping` anywhere. An `error` event can arrive after HTTP 200, and then the stream
ends without `message_stop`. `message_delta.usage` is cumulative: it is assigned, never added.

Nothing is handed out before the first content. For a surface that shows no reasoning (the
completions surface) that is the first answer text or the finish: thinking arrives first and is
held until then, so a failure while the model thinks is still an exception that retry and
fallback can act on. For a surface that shows reasoning (chat) the thinking is content itself.
"""

from __future__ import annotations

import time

import msgspec

from proxy.core.errors import protocol_error
from proxy.core.model import Delta, StreamHead, ToolCallDelta, Usage
from proxy.core.target import Target
from proxy.providers.anthropic import wire
from proxy.providers.anthropic.translate import error_event, finish_reason, usage_of

_decoder = msgspec.json.Decoder(wire.Event)
# Surfaces, by wire format (CallContext.wire), that render no reasoning.
NO_REASONING_WIRES = frozenset({"openai.completions"})


class DeltaDecoder:
    """Feed the data of each SSE event; take canonical deltas out once `content_seen`. Raises
    UpstreamError on an error event or an event that is not Anthropic's documented shape."""

    def __init__(self, target: Target, reasoning_is_content: bool = False) -> None:
        self.target = target
        self.reasoning_is_content = reasoning_is_content
        self.head: StreamHead | None = None
        self.output: list[Delta] = []
        self.content_seen = False
        self.finished = False
        self._input_tokens = 0
        self._usage: wire.Usage | wire.DeltaUsage | None = None
        # Open tool_use blocks: Anthropic's block index → the call's index among the choice's
        # tool calls (OpenAI clients index calls from 0); and the calls that got arguments.
        self._calls: dict[int, int] = {}
        self._with_arguments: set[int] = set()
        self._call_count = 0

    def take(self) -> list[Delta]:
        out = self.output
        self.output = []
        return out

    def _bad(self, what: str) -> Exception:
        return protocol_error(self.target.label, what)

    def feed(self, data: bytes) -> None:
        if self.finished:
            return
        try:
            event = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise self._bad("undecodable stream event") from None
        kind = event.type
        if kind == "error":
            raise error_event(self.target, event.error or wire.ErrorBody())
        if self.head is None:
            if kind == "ping":
                return
            if kind != "message_start" or event.message is None:
                raise self._bad(f"stream began with {kind!r}, not message_start")
            message = event.message
            self.head = StreamHead(message.id, int(time.time()), message.model or self.target.model)
            self._input_tokens = message.usage.input_tokens
            self._usage = message.usage
            return
        if kind == "content_block_delta":
            self._delta(event)
        elif kind == "content_block_start":
            self._start(event)
        elif kind == "message_delta":
            if event.delta is None or event.usage is None:
                raise self._bad("message_delta without delta or usage")
            usage = event.usage
            if usage.input_tokens is not None:
                self._input_tokens = usage.input_tokens
            self._usage = usage  # cumulative: the latest counts replace the earlier ones
            self._emit(Delta(finish_reason=finish_reason(event.delta.stop_reason)))
        elif kind == "content_block_stop":
            self._stop(event)
        elif kind == "message_stop":
            self.finished = True
            self._emit(Delta(index=-1, usage=self.usage))
        # ping and event types added later carry nothing to relay.

    @property
    def usage(self) -> Usage | None:
        return usage_of(self._usage, self._input_tokens) if self._usage is not None else None

    def _start(self, event: wire.Event) -> None:
        block = event.content_block
        if block is None or event.index is None:
            raise self._bad("content_block_start without its block")
        if block.type == "redacted_thinking":
            self._emit(Delta(redacted_reasoning=block.data or ""))
        elif block.type == "text" and block.text:
            self._emit(Delta(text=block.text))
        elif block.type == "thinking" and block.thinking:
            self._emit(Delta(reasoning=block.thinking))
        elif block.type == "tool_use":
            if not block.id or not block.name:
                raise self._bad("a tool_use block without id or name")
            call = self._call_count
            self._call_count += 1
            self._calls[event.index] = call
            self._emit(Delta(tool_calls=[ToolCallDelta(call, block.id, block.name, "")]))

    def _stop(self, event: wire.Event) -> None:
        call = self._calls.pop(event.index, None) if event.index is not None else None
        if call is not None and call not in self._with_arguments:
            # A call without arguments streams no input_json_delta: its arguments are `{}`,
            # which the client can parse, as it could the whole answer's.
            self._emit(Delta(tool_calls=[ToolCallDelta(call, arguments="{}")]))

    def _delta(self, event: wire.Event) -> None:
        delta = event.delta
        if delta is None or event.index is None:
            raise self._bad("content_block_delta without its delta")
        kind = delta.type
        if kind == "text_delta":
            if delta.text is None:
                raise self._bad("text_delta without text")
            self._emit(Delta(text=delta.text))
        elif kind == "thinking_delta":
            if delta.thinking is None:
                raise self._bad("thinking_delta without thinking")
            self._emit(Delta(reasoning=delta.thinking))
        elif kind == "signature_delta":
            self._emit(Delta(reasoning_signature=delta.signature or ""))
        elif kind == "input_json_delta":
            call = self._calls.get(event.index)
            if call is None or delta.partial_json is None:
                raise self._bad("input_json_delta outside a tool_use block or without partial_json")
            if delta.partial_json:
                self._with_arguments.add(call)
                self._emit(Delta(tool_calls=[ToolCallDelta(call, arguments=delta.partial_json)]))
        # Later delta types: nothing to relay.

    def _emit(self, delta: Delta) -> None:
        if not self.content_seen and (delta.text or delta.tool_calls or delta.finish_reason is not None or (
                self.reasoning_is_content and (delta.reasoning or delta.redacted_reasoning))):
            self.content_seen = True
        self.output.append(delta)
