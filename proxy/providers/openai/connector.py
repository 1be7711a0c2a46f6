"""`type: openai` — OpenAI and every server that speaks its `/v1/completions` wire format
(vLLM, llama.cpp, Ollama, Together, Groq, DeepSeek, Mistral, OpenRouter, …)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import msgspec

from proxy.core.errors import connection_error, protocol_error
from proxy.core.model import ChatRequest, Delta, Result, StreamHead
from proxy.core.stream import CallContext, UpstreamStream
from proxy.core.target import Target
from proxy.providers.base import Connector
from proxy.providers.openai import wire
from proxy.providers.openai.params import PARAMS
from proxy.providers.openai.stream import (
    PASSTHROUGH,
    DeltaDecoder,
    StreamTranslator,
    collect_frames,
)
from proxy.providers.openai.translate import error_from_body, error_in_body, result_of

_encode = msgspec.json.Encoder().encode
_completion_decoder = msgspec.json.Decoder(wire.UpstreamCompletion)
_STREAM_OPTIONS = wire.StreamOptions()


def request_body(request: ChatRequest, target: Target) -> bytes:
    """The legacy-completions body: the raw prompt, the parameters as the client set them, and
    fields outside our schema passed through unchanged (README, "Parameters")."""
    body = wire.UpstreamRequest(
        model=target.model,
        prompt=request.prompt if request.prompt is not None else "",
        stream=request.stream,
        stream_options=_STREAM_OPTIONS if request.stream else None,
        echo=request.echo,
        frequency_penalty=request.frequency_penalty,
        max_tokens=request.max_tokens,
        presence_penalty=request.presence_penalty,
        seed=request.seed,
        stop=request.stop,
        temperature=request.temperature,
        top_p=request.top_p,
        n=request.n,
        user=request.user,
    )
    if not request.extras:
        return _encode(body)
    # Our own fields win over an extra of the same name (the surface never lets one through).
    merged: dict[str, Any] = {**request.extras, **msgspec.structs.asdict(body)}
    return _encode({k: v for k, v in merged.items() if v is not None or k in request.extras})


class OpenAIConnector(Connector):
    PARAMS = PARAMS
    session: aiohttp.ClientSession
    url: str

    async def start(self) -> None:
        headers = {"Content-Type": "application/json", **self.config.headers}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_connections, ttl_dns_cache=300),
            headers=headers,
            # Per-attempt deadlines come from the pipeline's timeout stage, not from here.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_seconds),
            auto_decompress=True,
        )
        assert self.config.base_url is not None
        self.url = self.config.base_url.rstrip("/") + "/completions"

    async def close(self) -> None:
        await self.session.close()

    def _post(self, request: ChatRequest, target: Target, ctx: CallContext) -> Awaitable[aiohttp.ClientResponse]:
        # Awaited by the caller inside its own try: one coroutine frame fewer per resumption.
        return self.session.post(self.url, data=request_body(request, target),
                                 headers={"X-Request-ID": ctx.request_id})

    async def complete(self, request: ChatRequest, target: Target, ctx: CallContext) -> Result:
        try:
            response = await self._post(request, target, ctx)
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target.label, type(err).__name__) from None
        try:
            raw = await response.read()
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target.label, type(err).__name__) from None
        finally:
            response.release()
        if response.status >= 400:
            raise error_from_body(target, response.status, raw, response.headers)
        try:
            upstream = _completion_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise protocol_error(target.label, str(err)) from None
        if upstream.error is not None:
            raise error_in_body(target, upstream.error)
        return result_of(upstream, target)

    async def stream(self, request: ChatRequest, target: Target, ctx: CallContext) -> UpstreamStream[Any]:
        try:
            response = await self._post(request, target, ctx)
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target.label, type(err).__name__) from None
        if response.status >= 400:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, OSError):
                raw = b""
            finally:
                response.release()
            raise error_from_body(target, response.status, raw, response.headers)
        if not response.content_type.startswith("text/event-stream"):
            response.close()
            raise protocol_error(target.label, f"expected text/event-stream, got {response.content_type}")
        if ctx.wire == PASSTHROUGH:
            translate = StreamTranslator(target)
            stream: UpstreamStream[Any] = await UpstreamStream.open(
                self._frames(response, translate), response.close, _no_head, PASSTHROUGH, collect_frames)
            stream.usage_source = translate
            return stream
        decoder = DeltaDecoder(target)
        return await UpstreamStream.open(self._deltas(response, decoder), response.close,
                                         lambda: decoder.head or _no_head())

    async def _frames(self, response: aiohttp.ClientResponse, translate: StreamTranslator) -> AsyncIterator[bytes]:
        """SSE frames, one batch per upstream read; nothing before the first content, so a
        failure before it surfaces from UpstreamStream.open while retry and fallback can act."""
        target = translate.target
        try:
            async for data in response.content.iter_any():
                try:
                    translate.feed(data)
                except Exception:
                    if translate.content_seen and translate.output:
                        yield translate.take()
                    raise
                if translate.output and (translate.content_seen or translate.finished):
                    yield translate.take()
                if translate.finished:
                    return
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target.label, f"stream cut: {type(err).__name__}") from None
        raise protocol_error(target.label, "stream ended without [DONE]")

    async def _deltas(self, response: aiohttp.ClientResponse, decoder: DeltaDecoder) -> AsyncIterator[list[Delta]]:
        target = decoder.target
        try:
            async for data in response.content.iter_any():
                decoder.feed(data)
                if decoder.output and (decoder.content_seen or decoder.finished):
                    yield decoder.take()
                if decoder.finished:
                    return
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target.label, f"stream cut: {type(err).__name__}") from None
        raise protocol_error(target.label, "stream ended without [DONE]")


def _no_head() -> StreamHead:
    return StreamHead("", 0, "")


CONNECTOR = OpenAIConnector
