"""The one structured log event per request (DESIGN.md, "Observability").

Never the prompt, never a key, never an `inputs` value: only names and ids.
"""

from __future__ import annotations

import time
from typing import Any

from proxy.pipeline.call import Call


def _trace_fields(call: Call) -> dict[str, Any]:
    request = call.request
    orq = request.orq
    fields: dict[str, Any] = {}
    name = request.name or (orq.name if orq else None)
    if name:
        fields["trace_name"] = name
    if orq is not None:
        identity = orq.identity or orq.contact
        if identity is not None:
            fields["identity_id"] = identity.id
        if orq.thread is not None:
            fields["thread_id"] = orq.thread.id
            if orq.thread.tags:
                fields["thread_tags"] = orq.thread.tags
    return fields


def log_request(logger: Any, request_id: str, call: Call | None, status: int, path: str) -> None:
    event: dict[str, Any] = {"request_id": request_id, "route": path, "status": status}
    if call is not None:
        duration = time.perf_counter() - call.started
        event.update(
            key=call.key.name if call.key else None,
            requested_model=call.request.model,
            served_model=call.served.label if call.served else None,
            stream=call.request.stream,
            attempts=[{"model": a.model, "status": a.status, "ms": a.ms} for a in call.attempts],
            cache=call.cache_status,
            duration_ms=round(duration * 1000, 3),
            overhead_ms=round((duration - call.upstream_seconds) * 1000, 3),
        )
        if call.first_token_seconds is not None:
            event["ttft_ms"] = round(call.first_token_seconds * 1000, 3)
        if call.usage is not None:
            event["prompt_tokens"] = call.usage.prompt_tokens
            event["completion_tokens"] = call.usage.completion_tokens
        event.update(_trace_fields(call))
        event.update(call.log)
    if status >= 500:
        logger.error("request", **event)
    else:
        logger.info("request", **event)
