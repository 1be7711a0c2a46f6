"""Where cached answers live: aiocache, in memory (bounded) or in Redis (shared by instances).

A cache must never make a request fail or crawl: every backend error or timeout becomes a
miss, and after one the backend is skipped for a few seconds, so an outage costs one timeout
rather than one per request.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlparse

import msgspec
import structlog
from aiocache.serializers import NullSerializer

from proxy.cache.memory import BoundedMemoryCache
from proxy.config import CacheConfig
from proxy.core.model import Result


class Entry(msgspec.Struct, array_like=True):
    result: Result
    served: str  # the provider/model that produced it


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Entry).decode
_PAUSE_SECONDS = 5.0
_log = structlog.get_logger("switchyard.cache")


def _backend(config: CacheConfig) -> Any:
    if config.backend == "memory":
        return BoundedMemoryCache(config.max_entries, config.max_bytes, namespace=config.namespace,
                                  timeout=None)
    # Imported only when configured (proxy/cache/__init__.py says why).
    from aiocache.backends.redis import RedisCache

    url = urlparse(config.url or "")
    return RedisCache(
        endpoint=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        db=int((url.path or "/0").lstrip("/") or 0),
        password=url.password,
        namespace=config.namespace,
        serializer=NullSerializer(encoding=None),
        timeout=config.timeout_seconds,
        create_connection_timeout=config.timeout_seconds,
    )


class ResponseCache:
    def __init__(self, config: CacheConfig) -> None:
        self.backend = _backend(config)
        self.memory = self.backend if isinstance(self.backend, BoundedMemoryCache) else None
        self.paused_until = 0.0
        self.last_error: str | None = None

    def _failed(self, err: BaseException) -> None:
        # Called only while available, so at most once per pause: the log says each outage
        # without flooding (the metric counts every request it affects).
        self.last_error = f"{type(err).__name__}: {err}"
        self.paused_until = time.monotonic() + _PAUSE_SECONDS
        _log.warning("cache backend unavailable; lookups are misses until it answers again",
                     error=self.last_error[:300], retry_in_seconds=_PAUSE_SECONDS)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.paused_until

    async def get(self, key: str) -> Entry | None:
        """The entry, None for a miss; raises nothing. `available` tells a miss from an outage."""
        if self.memory is not None:
            raw = self.memory.lookup(key)
        elif not self.available:
            return None
        else:
            try:
                raw = await self.backend.get(key)
            except Exception as err:  # noqa: BLE001 — any backend failure is a miss, by design
                self._failed(err)
                return None
        if raw is None:
            return None
        try:
            return _decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None  # written by an incompatible version: a miss, overwritten on store

    async def set(self, key: str, entry: Entry, ttl: float) -> None:
        if not self.available:
            return
        try:
            await self.backend.set(key, _encode(entry), ttl=float(ttl))
        except Exception as err:  # noqa: BLE001 — the answer was served, the cache just misses it
            self._failed(err)

    async def close(self) -> None:
        try:
            await self.backend.close()
        except Exception:  # noqa: BLE001, S110 — closing a broken connection must not fail a shutdown
            pass
