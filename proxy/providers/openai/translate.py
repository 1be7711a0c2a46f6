"""OpenAI's completion objects ↔ the canonical model, and its error bodies → our errors."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from proxy.core.errors import UpstreamError, status_error
from proxy.core.model import FINISH_REASONS, Choice, Delta, FinishReason, Result
from proxy.core.target import Target
from proxy.providers.http import retry_after
from proxy.providers.openai import wire

_error_decoder = msgspec.json.Decoder(wire.ErrorEnvelope)


def finish_reason(reason: str | None) -> FinishReason:
    if reason is None:
        return "stop"
    # Servers add their own reasons (vLLM's "abort", llama.cpp's "eos"); the spec's enum has four.
    return reason if reason in FINISH_REASONS else "stop"  # type: ignore[return-value]


def result_of(upstream: wire.UpstreamCompletion, target: Target) -> Result:
    return Result(
        id=upstream.id,
        created=upstream.created,
        model=upstream.model or target.model,
        choices=[Choice(index=c.index, text=c.text, finish_reason=finish_reason(c.finish_reason),
                        logprobs=c.logprobs) for c in upstream.choices],
        usage=upstream.usage,
        system_fingerprint=upstream.system_fingerprint,
    )


def deltas_of(chunk: wire.UpstreamCompletion) -> list[Delta]:
    """One stream chunk as deltas; a usage-only chunk becomes the usage delta (index -1)."""
    deltas = [Delta(index=c.index, text=c.text, logprobs=c.logprobs,
                    finish_reason=finish_reason(c.finish_reason) if c.finish_reason is not None else None)
              for c in chunk.choices]
    if chunk.usage is not None:
        deltas.append(Delta(index=-1, usage=chunk.usage))
    return deltas


def _machine_code(body: wire.UpstreamErrorBody) -> str | None:
    """The provider's machine-readable error name (`context_length_exceeded`, llama.cpp's
    `exceed_context_size_error`); a bare number such as "429" or a broad type such as
    `invalid_request_error` says nothing the status does not."""
    if isinstance(body.code, str) and body.code and not body.code.isdigit():
        return body.code
    if isinstance(body.type, str) and body.type and body.type not in _GENERIC_TYPES:
        return body.type
    return None


def error_from_body(target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """The upstream's own error object, its message and machine-readable code kept."""
    wait = retry_after(headers)
    try:
        body = _error_decoder.decode(raw).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = raw[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
        return status_error(target.label, status, f"{target.label}: {text}", retry_after=wait)
    return status_error(target.label, status, body.message or f"{target.label}: HTTP {status}",
                        code=_machine_code(body),
                        param=body.param, retry_after=wait)


# OpenAI's broad `type` values say no more than the status; only specific names are kept as codes.
_GENERIC_TYPES = frozenset({"invalid_request_error", "server_error", "requests", "api_error", "tokens"})


def error_in_body(target: Target, error: wire.UpstreamErrorBody | str) -> UpstreamError:
    """An error object where a completion or a chunk was expected (OpenAI's mid-stream
    `data: {"error": {...}}`): the provider failed, whatever the HTTP status said."""
    message = error if isinstance(error, str) else error.message
    return status_error(target.label, 502, message or f"{target.label}: error from provider")
