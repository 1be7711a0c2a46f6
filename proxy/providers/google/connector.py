"""`type: google` — Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`).

A chat-native provider: a legacy completion is one user content; the proxy serves prompt lists
and `echo` (proxy.providers.chat); `n` is Gemini's own `candidateCount` (docs/providers.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from proxy.core.errors import ErrorCode, ProxyError, UpstreamError, protocol_error
from proxy.core.model import ChatRequest, Delta, Result, StreamHead
from proxy.core.stream import CallContext, UpstreamStream
from proxy.core.target import Target
from proxy.providers.chat import ChatConnector, Part
from proxy.providers.effort import thinking_for
from proxy.providers.google import wire
from proxy.providers.google.params import (
    MAX_CANDIDATES,
    MAX_STOP_SEQUENCES,
    NEVER_THINKING,
    PARAMS,
    model_family,
)
from proxy.providers.google.stream import DeltaDecoder
from proxy.providers.google.translate import error_from, request_body, result_of

_response_decoder = msgspec.json.Decoder(wire.GenerateContentResponse)


class GoogleConnector(ChatConnector):
    PARAMS = PARAMS
    NATIVE_N = True

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.config.api_key} if self.config.api_key else {}

    def error_from(self, target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return error_from(target, status, raw, headers)

    def url(self, target: Target, method: str) -> str:
        assert self.config.base_url is not None
        model = quote(target.model.removeprefix("models/"), safe="-._~")
        return f"{self.config.base_url.rstrip('/')}/v1beta/models/{model}:{method}"

    def check(self, request: ChatRequest, target: Target) -> None:
        super().check(request, target)
        thinking = thinking_for(request)
        if thinking is not None and thinking.type != "disabled" and model_family(target.model, NEVER_THINKING):
            param = "thinking" if request.thinking is not None else "reasoning_effort"
            raise ProxyError(400, f"Provider {self.name!r} cannot honour `{param}` on {target.model}: the model "
                             "has no thinking", param=param, code=ErrorCode.unsupported_parameter)
        if len(request.stop_sequences) > MAX_STOP_SEQUENCES:
            raise ProxyError(400, f"Provider {self.name!r} takes at most {MAX_STOP_SEQUENCES} stop sequences, "
                             f"got {len(request.stop_sequences)}", param="stop", code=ErrorCode.unsupported_parameter)

    def parts(self, request: ChatRequest) -> list[Part]:
        """One call per prompt, as for any provider with `n`; an `n` above candidateCount's
        bound is split into calls of at most 8 candidates."""
        split: list[Part] = []
        for part in super().parts(request):
            n = part.request.n or 1
            for first in range(0, n, MAX_CANDIDATES):
                count = min(MAX_CANDIDATES, n - first)
                one = msgspec.structs.replace(part.request, n=count if count > 1 else None)
                split.append(Part(one, part.first_index + first, part.echo))
        return split

    async def complete_one(self, request: ChatRequest, target: Target, ctx: CallContext) -> Result:
        response = await self.post(self.url(target, "generateContent"), request_body(request, target), target, ctx)
        raw = await self.read(response, target)
        try:
            answer = _response_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise protocol_error(target.label, str(err)) from None
        if answer.error is not None:
            raise self.error_from(target, answer.error.code if answer.error.code >= 400 else 502, raw, {})
        return result_of(answer, target, request.n or 1, ctx.request_id)

    async def stream_one(self, request: ChatRequest, target: Target, ctx: CallContext) -> UpstreamStream[Any]:
        response = await self.post(self.url(target, "streamGenerateContent?alt=sse"),
                                   request_body(request, target), target, ctx, stream=True)
        decoder = DeltaDecoder(target, request.n or 1, ctx.request_id)
        return await UpstreamStream.open(self._deltas(self.events(response, target), decoder), response.close,
                                         lambda: decoder.head or _no_head(target, ctx))

    async def _deltas(self, events: AsyncIterator[list[bytes]], decoder: DeltaDecoder) -> AsyncIterator[list[Delta]]:
        """Nothing is yielded before the first content: a failure before it surfaces from
        UpstreamStream.open, while retry and fallback can still act."""
        async for batch in events:
            try:
                decoder.feed(batch)
            except UpstreamError:
                # Content read together with the failure still goes first: had it come in a read
                # of its own, the client would have it, so the failure is an in-band error.
                if decoder.output and decoder.content_seen:
                    yield decoder.take()
                raise
            if decoder.output and decoder.content_seen:
                yield decoder.take()
        decoder.end()
        if decoder.output:
            yield decoder.take()


def _no_head(target: Target, ctx: CallContext) -> StreamHead:
    return StreamHead(ctx.request_id, 0, target.model)


CONNECTOR = GoogleConnector
