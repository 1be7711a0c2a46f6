"""`type: openai` — OpenAI and every server that speaks its `/v1/completions` wire format
(vLLM, llama.cpp, Ollama, Together, Groq, DeepSeek, Mistral, OpenRouter, …)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from email.utils import parsedate_to_datetime

import aiohttp
import msgspec

from proxy.api.errors import ProxyError, upstream_error
from proxy.api.response import Completion
from proxy.pipeline.call import Call, Target
from proxy.providers.base import (
    ChunkStream,
    Connector,
    UpstreamError,
    connection_error,
    protocol_error,
)
from proxy.providers.openai import wire
from proxy.providers.openai.stream import StreamTranslator, completion_of, error_in_body

_encode = msgspec.json.Encoder().encode
_completion_decoder = msgspec.json.Decoder(wire.UpstreamCompletion)
_error_decoder = msgspec.json.Decoder(wire.ErrorEnvelope)

def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _error_from_body(target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """The upstream's own error object, kept as it is when it has OpenAI's shape."""
    try:
        body = _error_decoder.decode(raw).error
        base = ProxyError(status, body.message, type=upstream_error(status, "").type, param=body.param,
                          code=body.code if isinstance(body.code, str) else upstream_error(status, "").code)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = raw[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
        base = upstream_error(status, f"{target.label}: {text}")
    return UpstreamError(base, retry_after=_retry_after(headers))


class OpenAIConnector(Connector):
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

    def _body(self, call: Call, target: Target) -> bytes:
        request = call.request
        return _encode(
            wire.UpstreamRequest(
                model=target.model,
                prompt=call.prompt,
                stream=call.stream,
                stream_options=wire.StreamOptions() if call.stream else None,
                user=request.user,
                **call.params,
            )
        )

    def _post(self, call: Call, target: Target) -> Awaitable[aiohttp.ClientResponse]:
        # Awaited by the caller inside its own try: one coroutine frame fewer per resumption.
        return self.session.post(self.url, data=self._body(call, target), headers={"X-Request-ID": call.request_id})

    async def complete(self, call: Call, target: Target) -> Completion:
        try:
            response = await self._post(call, target)
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target, type(err).__name__) from None
        try:
            raw = await response.read()
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target, type(err).__name__) from None
        finally:
            response.release()
        if response.status >= 400:
            raise _error_from_body(target, response.status, raw, response.headers)
        try:
            upstream = _completion_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise protocol_error(target, str(err)) from None
        if upstream.error is not None:
            raise error_in_body(target, upstream.error)
        return completion_of(upstream, target)

    async def stream(self, call: Call, target: Target) -> ChunkStream:
        try:
            response = await self._post(call, target)
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target, type(err).__name__) from None
        if response.status >= 400:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, OSError):
                raw = b""
            finally:
                response.release()
            raise _error_from_body(target, response.status, raw, response.headers)
        if not response.content_type.startswith("text/event-stream"):
            response.close()
            raise protocol_error(target, f"expected text/event-stream, got {response.content_type}")
        return await ChunkStream.open(self._frames(response, call, target), response.close, call)

    async def _frames(self, response: aiohttp.ClientResponse, call: Call, target: Target) -> AsyncIterator[bytes]:
        """SSE frames, one batch per upstream read; nothing before the first content, so a
        failure before it surfaces from ChunkStream.open while retry and fallback can act."""
        translate = StreamTranslator(call, target)
        try:
            async for data in response.content.iter_any():
                try:
                    translate.feed(data)
                except UpstreamError:
                    if translate.content_seen and translate.output:
                        yield translate.take()
                    raise
                if translate.output and (translate.content_seen or translate.finished):
                    yield translate.take()
                if translate.finished:
                    return
        except (aiohttp.ClientError, OSError) as err:
            raise connection_error(target, f"stream cut: {type(err).__name__}") from None
        raise protocol_error(target, "stream ended without [DONE]")


CONNECTOR = OpenAIConnector
