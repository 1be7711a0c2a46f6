"""The one structured log event per request (DESIGN.md, "Observability").

Never the prompt, never a key, never an `inputs` value: only names and ids.

This event is on the hot path, so it is a msgspec struct encoded straight to a JSON line in
the same shape structlog gives every other event (`event`, `level`, `timestamp`), into the
same batched stdout writer.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from proxy.observability.logging import BUFFERED
from proxy.pipeline.call import Attempt, Call


class RequestEvent(msgspec.Struct, omit_defaults=True):
    event: str  # "request"; required fields are always written, defaults are left out
    level: str
    timestamp: str
    request_id: str
    route: str  # the surface (`completions`, `chat`), or the path for a request refused before one
    status: int
    path: str | None = None
    key: str | None = None
    requested_model: str | None = None
    served_model: str | None = None
    stream: bool | None = None
    attempts: list[Attempt] | None = None
    cache: str | None = None
    duration_ms: float | None = None
    overhead_ms: float | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: float | None = None  # from the config's pricing table
    rate_limited: str | None = None  # the per-key limit that refused it (its param)
    trace_name: str | None = None
    identity_id: str | None = None
    thread_id: str | None = None
    thread_tags: list[str] | None = None
    prompt_id: str | None = None
    prompt_version: int | None = None
    stream_error: dict[str, Any] | None = None
    circuit_open: list[str] | None = None  # candidates skipped because their circuit breaker was open
    knowledge: list[dict[str, Any]] | None = None  # per knowledge base searched: key and chunk ids used


_encode = msgspec.json.Encoder().encode
_second = [0, ""]  # the formatted timestamp up to the second, reused within that second


def _timestamp() -> str:
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second[0] = whole
        _second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((now - whole) * 1_000_000):06d}Z"


# Fields a client writes are capped in the log: a 1 MiB `thread.tags` must not be a 1 MiB log line.
MAX_FIELD_CHARS = 256
MAX_TAGS = 32


def _cap(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_FIELD_CHARS:
        return value
    return f"{value[:MAX_FIELD_CHARS]}…(+{len(value) - MAX_FIELD_CHARS} chars)"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def request_event(request_id: str, call: Call | None, status: int, path: str) -> RequestEvent:
    event = RequestEvent("request", "error" if status >= 500 else "info", "", request_id, path, status)
    if call is None:
        return event
    event.route, event.path = call.route_name, path
    request = call.request
    duration = time.perf_counter() - call.started
    event.key = call.key.name if call.key else None
    event.served_model = call.served.label if call.served else None
    event.stream = request.stream
    event.attempts = call.attempts
    event.cache = call.cache_status
    event.duration_ms = _ms(duration)
    event.overhead_ms = _ms(call.overhead_seconds())
    if call.first_token_seconds is not None:
        event.ttft_ms = _ms(call.first_token_seconds)
    if call.usage is not None:
        event.prompt_tokens = call.usage.prompt_tokens
        event.completion_tokens = call.usage.completion_tokens
        event.reasoning_tokens = call.usage.reasoning_tokens or None
    event.requested_model = _cap(request.model)
    event.trace_name = _cap(request.name)
    orq = request.orq
    if orq is not None:
        event.trace_name = event.trace_name or _cap(orq.name)
        identity = orq.identity or orq.contact
        if identity is not None:
            event.identity_id = _cap(identity.id)
        if orq.thread is not None:
            event.thread_id = _cap(orq.thread.id)
            tags = orq.thread.tags
            if tags is not None:
                event.thread_tags = [_cap(t) or "" for t in tags[:MAX_TAGS]]
                if len(tags) > MAX_TAGS:
                    event.thread_tags.append(f"…(+{len(tags) - MAX_TAGS} tags)")
    log = call.log
    if log:
        event.prompt_id = log.get("prompt_id")
        event.prompt_version = log.get("prompt_version")
        event.stream_error = log.get("stream_error")
        event.circuit_open = log.get("circuit_open")
        event.cost = log.get("cost")
        limits = log.get("_limits")
        event.rate_limited = limits.limited if limits is not None else None
        event.knowledge = log.get("knowledge")
    return event


def log_request(logger: Any, request_id: str, call: Call | None, status: int, path: str) -> None:
    """`logger` is structlog's, used when its output is not JSON (a terminal)."""
    event = request_event(request_id, call, status, path)
    if BUFFERED.active:
        event.timestamp = _timestamp()
        BUFFERED.write_line(_encode(event), urgent=status >= 500)
        return
    fields = msgspec.structs.asdict(event)
    fields = {k: v for k, v in fields.items() if v is not None and k not in ("event", "level", "timestamp")}
    (logger.error if status >= 500 else logger.info)("request", **fields)
