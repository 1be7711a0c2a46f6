"""The exact-match cache key, and the decision table it is built from.

Every field of the request is listed in FIELD_DECISIONS as part of the key or excluded with a
reason; tests/test_cache_key.py fails when a field is added to the request without a decision,
the way TensorZero's destructured key fails to compile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.api.request import GENERATION_FIELDS
from proxy.core.model import ChatRequest

KEY = "key"
FIELD_DECISIONS: dict[str, str] = {
    **{name: KEY for name in GENERATION_FIELDS},  # with the spec's defaults applied
    "model": KEY,
    "prompt": KEY,  # the final prompt, after templating
    "fallbacks": KEY,
    "load_balancer": KEY,
    "thinking": KEY,
    "fallback_on_codes": "excluded: which failures move on, not which answer",
    "plugins": "excluded: refused unless empty",
    "user": "excluded: end-user id for abuse tracking, does not change the answer",
    "name": "excluded: trace display name",
    "retry": "excluded: how to get an answer, not which answer",
    "timeout": "excluded: how long to wait, not which answer",
    "cache": "excluded: the cache's own settings (ttl)",
    "stream": "excluded: a streamed and a whole answer are the same answer, replayed either way",
    "stream_options": "excluded: whether usage is streamed, not which answer",
    "orq.name": "excluded: trace display name",
    "orq.retry": "excluded: see retry",
    "orq.timeout": "excluded: see timeout",
    "orq.cache": "excluded: see cache",
    "orq.fallbacks": KEY,
    "orq.load_balancer": KEY,
    "orq.prompt": KEY,  # through the final prompt it renders to, and its default parameters
    "orq.inputs": KEY,  # through the final prompt
    "orq.knowledge_bases": KEY,  # through the final prompt, once retrieval injects into it
    "orq.identity": "excluded: who asks, for analytics",
    "orq.contact": "excluded: who asks, for analytics",
    "orq.thread": "excluded: conversation grouping, for analytics",
}

# The chat surface's own fields (its routing fields and `orq` block are decided above).
CHAT_FIELD_DECISIONS: dict[str, str] = {
    "messages": KEY,  # the final messages, after templating and knowledge injection
    "max_completion_tokens": KEY,
    "logprobs": KEY,
    "top_logprobs": KEY,
    "response_format": KEY,
    "tools": KEY,
    "tool_choice": KEY,
    "parallel_tool_calls": KEY,
    "reasoning_effort": KEY,
    "stream_options": "excluded: whether usage is streamed, not which answer",
    "metadata": "excluded: tags for the provider's own records, not which answer",
}

# The canonical request's fields, decided the same way (tests/test_cache_key.py checks all three
# tables): the key is built from the canonical request, so this is what it really holds.
CANONICAL_DECISIONS: dict[str, str] = {
    "messages": KEY,
    "prompt": KEY,
    **{name: KEY for name in GENERATION_FIELDS},
    "thinking": KEY,
    "tools": KEY,
    "tool_choice": KEY,
    "parallel_tool_calls": KEY,
    "response_format": KEY,
    "logprobs": KEY,
    "top_logprobs": KEY,
    "reasoning_effort": KEY,
    "extras": KEY,  # fields outside our schema reach OpenAI-compatible upstreams: they change the answer
    "metadata": "excluded: see metadata",
    "user": "excluded: see user",
    "stream": "excluded: see stream",
}

KEY_VERSION = 2  # bump when what the key means changes, so old entries are never served


class CacheKey(msgspec.Struct, array_like=True):
    version: int
    tenant: str  # the API key's name: one tenant's answers are never served to another
    surface: str  # a chat answer and a completion answer never share an entry
    models: list[str]  # the model, or the load balancer's models
    weights: list[float] | None
    fallbacks: list[str]
    request: ChatRequest  # the final canonical request, spec defaults as unset


_encode = msgspec.msgpack.Encoder().encode


def cache_key(chat: ChatRequest, *, tenant: str, surface: str, defaults: Mapping[str, Any], models: list[str],
              weights: list[float] | None, fallbacks: list[str]) -> str:
    """`models` is the model, or the load balancer's models with their `weights`; `defaults`
    the surface's spec defaults: an omitted field and one sent with its default ask alike."""
    unset = {name: None for name, default in defaults.items() if getattr(chat, name) == default}
    key = CacheKey(
        version=KEY_VERSION,
        tenant=tenant,
        surface=surface,
        models=models,
        weights=weights,
        fallbacks=fallbacks,
        request=msgspec.structs.replace(chat, user=None, stream=False, metadata=None, **unset),
    )
    return hashlib.sha256(_encode(key)).hexdigest()
