"""What the proxy does for chat-native providers (Anthropic, Gemini, …) that a legacy
completion needs and they lack (README, "Providers"):

- a prompt list is served prompt by prompt; choice `index = prompt × n + j`;
- `n > 1` fans out concurrent calls where the provider has no `n` (`NATIVE_N = False`);
- `echo` puts the prompt before each choice's text.

Usage is summed over the calls. A subclass implements `complete_one` and `stream_one` for one
prompt (with `n` only when `NATIVE_N`), and declares these fields `ByProxy` in its table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar, NamedTuple

import msgspec

from proxy.core.errors import ErrorCode, ProxyError
from proxy.core.model import (
    ChatRequest,
    Choice,
    Delta,
    Result,
    Usage,
    add_usage,
    with_prompt,
)
from proxy.core.stream import CallContext, UpstreamStream
from proxy.core.target import Target
from proxy.providers.http import HTTPConnector

MAX_FANOUT = 128  # calls one request may fan out to (prompts × n); the spec caps n at 128


class Part(NamedTuple):
    """One upstream call of a fan-out and where its choices go."""

    request: ChatRequest
    first_index: int  # its choice j becomes choice first_index + j
    echo: str | None  # text to put before each of its choices


class ChatConnector(HTTPConnector):
    NATIVE_N: ClassVar[bool] = False

    async def complete_one(self, request: ChatRequest, target: Target, ctx: CallContext) -> Result:
        raise NotImplementedError

    async def stream_one(self, request: ChatRequest, target: Target, ctx: CallContext) -> UpstreamStream[Any]:
        raise NotImplementedError

    def check(self, request: ChatRequest, target: Target) -> None:
        super().check(request, target)
        calls = len(request.prompts) * (1 if self.NATIVE_N else (request.n or 1))
        if calls > MAX_FANOUT:
            param = "prompt" if len(request.prompts) > 1 else "n"
            raise ProxyError(400, f"Provider {self.name!r} takes one prompt and one choice per call: this request "
                             f"would need {calls} calls (at most {MAX_FANOUT})", param=param,
                             code=ErrorCode.unsupported_parameter)

    def parts(self, request: ChatRequest) -> list[Part]:
        n = request.n or 1
        prompts: list[str | None] = list(request.prompts) if request.prompt is not None else [None]
        per_call = n if self.NATIVE_N else 1
        parts: list[Part] = []
        for p, prompt in enumerate(prompts):
            one = request if prompt is None else with_prompt(request, prompt)
            one = msgspec.structs.replace(one, n=per_call if per_call > 1 else None, echo=None)
            echo = prompt if request.echo and prompt is not None else None
            parts += [Part(one, p * n + j * per_call, echo) for j in range(n // per_call)]
        return parts

    async def complete(self, request: ChatRequest, target: Target, ctx: CallContext) -> Result:
        parts = self.parts(request)
        if len(parts) == 1 and parts[0].echo is None:
            return await self.complete_one(parts[0].request, target, ctx)
        results = await asyncio.gather(*(self.complete_one(part.request, target, ctx) for part in parts))
        choices: list[Choice] = []
        usage: Usage | None = None
        for part, result in zip(parts, results, strict=True):
            for choice in result.choices:
                text = part.echo + choice.text if part.echo is not None else choice.text
                choices.append(msgspec.structs.replace(choice, index=part.first_index + choice.index, text=text))
            usage = add_usage(usage, result.usage)
        first = results[0]
        return msgspec.structs.replace(first, choices=sorted(choices, key=lambda c: c.index), usage=usage)

    async def stream(self, request: ChatRequest, target: Target, ctx: CallContext) -> UpstreamStream[Any]:
        parts = self.parts(request)
        if len(parts) == 1 and parts[0].echo is None:
            return await self.stream_one(parts[0].request, target, ctx)
        opening = [asyncio.ensure_future(self.stream_one(part.request, target, ctx)) for part in parts]
        try:
            streams = list(await asyncio.gather(*opening))
        except BaseException:
            for future in opening:  # the ones that opened are closed, the others cancelled
                if future.done() and not future.cancelled() and future.exception() is None:
                    await future.result().aclose()
                future.cancel()
            raise

        async def close() -> None:
            for stream in streams:
                await stream.aclose()

        return await UpstreamStream.open(_merged(streams, parts), close, lambda: streams[0].head)


async def _merged(streams: list[UpstreamStream[Any]], parts: list[Part]) -> AsyncIterator[list[Delta]]:
    """The calls' deltas as they arrive, choice indices moved into place; the echoes first and
    the summed usage last."""
    echoes = [Delta(index=part.first_index + j, text=part.echo)
              for part in parts if part.echo is not None for j in range(part.request.n or 1)]
    if echoes:
        yield echoes
    usages: list[Usage | None] = [None] * len(streams)
    pending = {asyncio.ensure_future(anext(stream)): i for i, stream in enumerate(streams)}
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                try:
                    batch = future.result()
                except StopAsyncIteration:
                    continue
                out = []
                for delta in batch:
                    if delta.index < 0:
                        usages[i] = delta.usage  # cumulative per call: the last one counts
                    else:
                        out.append(msgspec.structs.replace(delta, index=parts[i].first_index + delta.index))
                if out:
                    yield out
                pending[asyncio.ensure_future(anext(streams[i]))] = i
    finally:
        for future in pending:
            future.cancel()
    total: Usage | None = None
    for usage in usages:
        total = add_usage(total, usage)
    if total is not None:
        yield [Delta(index=-1, usage=total)]
