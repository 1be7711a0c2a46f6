"""The exact-match cache key, and the decision table it is built from.

Every field of the request is listed in FIELD_DECISIONS as part of the key or excluded with a
reason; tests/test_cache_key.py fails when a field is added to the request without a decision,
the way TensorZero's destructured key fails to compile.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import msgspec

from proxy.api.request import GENERATION_DEFAULTS, GENERATION_FIELDS, Thinking

if TYPE_CHECKING:  # importing proxy.pipeline here would be circular: its cache stage imports us
    from proxy.pipeline.call import Call

KEY = "key"
FIELD_DECISIONS: dict[str, str] = {
    **{name: KEY for name in GENERATION_FIELDS},  # with the spec's defaults applied
    "model": KEY,
    "prompt": KEY,  # the final prompt, after templating
    "fallbacks": KEY,
    "load_balancer": KEY,
    "thinking": KEY,
    "user": "excluded: end-user id for abuse tracking, does not change the answer",
    "name": "excluded: trace display name",
    "retry": "excluded: how to get an answer, not which answer",
    "timeout": "excluded: how long to wait, not which answer",
    "cache": "excluded: the cache's own settings (ttl)",
    "stream": "excluded: a streamed and a whole answer are the same answer, replayed either way",
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

KEY_VERSION = 1  # bump when what the key means changes, so old entries are never served


class CacheKey(msgspec.Struct, array_like=True):
    version: int
    tenant: str  # the API key's name: one tenant's answers are never served to another
    models: list[str]  # the model, or the load balancer's models
    weights: list[float] | None
    fallbacks: list[str]
    prompt: str | list[str]
    params: list[Any]  # GENERATION_FIELDS in order, defaults applied
    thinking: Thinking | None


_encode = msgspec.msgpack.Encoder().encode


def cache_key(call: Call) -> str:
    route = call.route
    assert route is not None
    if route.weighted is not None:
        models = [target.label for target, _ in route.weighted]
        weights: list[float] | None = [weight for _, weight in route.weighted]
    else:
        assert route.model is not None
        models, weights = [route.model.label], None
    params = call.params
    key = CacheKey(
        version=KEY_VERSION,
        tenant=call.key.name if call.key else "",
        models=models,
        weights=weights,
        fallbacks=[target.label for target in route.fallbacks],
        prompt=call.prompt,
        params=[params.get(name, GENERATION_DEFAULTS[name]) for name in GENERATION_FIELDS],
        thinking=call.request.thinking,
    )
    return hashlib.sha256(_encode(key)).hexdigest()
