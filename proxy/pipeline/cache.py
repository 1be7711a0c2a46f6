"""Stage: the exact-match cache (`cache: {type: exact_match, ttl}`), scoped by tenant.

A hit answers without any upstream call; a miss is stored only once complete and successful
(a stream at its clean end). The store is a background task, so a slow cache never delays the
answer; a cache outage is a miss, never a failed request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from proxy.api.request import Cache
from proxy.cache.assemble import framed, whole
from proxy.cache.key import cache_key
from proxy.cache.store import Entry, ResponseCache
from proxy.observability.metrics import Metrics
from proxy.pipeline.call import Call, Target
from proxy.pipeline.stage import Next
from proxy.providers.base import ChunkStream, Result


class CacheStage:
    def __init__(self, cache: ResponseCache, metrics: Metrics) -> None:
        self.cache = cache
        self.metrics = metrics
        self._writes: set[asyncio.Task[None]] = set()  # held so pending stores are not collected

    def __call__(self, call: Call, next: Next) -> Awaitable[Result]:
        assert call.route is not None
        settings = call.route.cache
        if settings is None:
            return next(call)
        return self._cached(call, next, settings)

    async def _cached(self, call: Call, next: Next, settings: Cache) -> Result:
        key = cache_key(call)
        entry = await self.cache.get(key)
        if entry is not None:
            call.cache_status = "hit"
            self.metrics.cache_result("hit")
            call.served = _target_of(entry.served)
            call.usage = entry.completion.usage
            if call.stream:
                return ChunkStream.replay(framed(entry.completion), call)
            return entry.completion
        call.cache_status = "miss"
        self.metrics.cache_result("miss" if self.cache.available else "error")
        result = await next(call)
        served = call.served.label if call.served else ""
        if isinstance(result, ChunkStream):
            result.on_complete = lambda frames: self._store_stream(key, frames, served, settings.ttl)
        else:
            self._store(key, Entry(result, served), settings.ttl)
        return result

    def _store_stream(self, key: str, frames: list[bytes], served: str, ttl: float) -> None:
        completion = whole(frames)
        if completion is not None:
            self._store(key, Entry(completion, served), ttl)

    def _store(self, key: str, entry: Entry, ttl: float) -> None:
        task = asyncio.get_running_loop().create_task(self.cache.set(key, entry, ttl))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


def _target_of(label: str) -> Target:
    provider, _, model = label.partition("/")
    return Target(provider, model)
