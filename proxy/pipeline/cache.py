"""Stage: the exact-match cache (`cache: {type: exact_match, ttl}`), scoped by tenant.

A hit answers without any upstream call; a miss is stored only once complete and successful
(a stream at its clean end). Entries are canonical results, so a streamed miss can be served
later as JSON and a JSON miss replayed as SSE, each rendered by the surface that asks. The
store is a background task, so a slow cache never delays the answer; a cache outage is a
miss, never a failed request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from proxy.api.request import Cache
from proxy.cache.key import cache_key
from proxy.cache.store import Entry, ResponseCache
from proxy.core.model import Result
from proxy.core.target import Target
from proxy.observability.metrics import Metrics
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome


class CacheStage:
    def __init__(self, cache: ResponseCache, metrics: Metrics) -> None:
        self.cache = cache
        self.metrics = metrics
        self._writes: set[asyncio.Task[None]] = set()  # held so pending stores are not collected

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        assert call.route is not None
        settings = call.route.cache
        if settings is None:
            return next(call)
        return self._cached(call, next, settings)

    async def _cached(self, call: Call, next: Next, settings: Cache) -> Outcome:
        key = key_of(call)
        entry = await self.cache.get(key)
        if entry is not None:
            call.cache_status = "hit"
            self.metrics.cache_result("hit")
            call.served = _target_of(entry.served)
            call.usage = entry.result.usage
            return entry.result  # the handler replays it as SSE when the client streams
        # An outage is served like a miss, but said as what it is: in the log event and metrics.
        call.cache_status = "miss" if self.cache.available else "error"
        self.metrics.cache_result(call.cache_status)
        result = await next(call)
        served = call.served.label if call.served else ""
        if isinstance(result, Result):
            self._store(key, Entry(result, served), settings.ttl)
        else:
            result.on_complete = lambda whole: self._store(key, Entry(whole, served), settings.ttl)
        return result

    def _store(self, key: str, entry: Entry, ttl: float) -> None:
        task = asyncio.get_running_loop().create_task(self.cache.set(key, entry, ttl))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


def key_of(call: Call) -> str:
    route = call.route
    assert route is not None
    if route.weighted is not None:
        models = [target.label for target, _ in route.weighted]
        weights: list[float] | None = [weight for _, weight in route.weighted]
    else:
        assert route.model is not None
        models, weights = [route.model.label], None
    return cache_key(call.chat, tenant=call.key.name if call.key else "", surface=call.surface.name,
                     defaults=call.surface.defaults, models=models, weights=weights,
                     fallbacks=[target.label for target in route.fallbacks])


def _target_of(label: str) -> Target:
    provider, _, model = label.partition("/")
    return Target(provider, model)
