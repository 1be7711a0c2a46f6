"""aiocache's in-memory backend, bounded.

The stock SimpleMemoryCache grows without limit; a gateway caching LLM answers for many
tenants needs a ceiling. This keeps aiocache's interface (so the Redis backend is a drop-in)
with an LRU bounded by entry count and total bytes, and expiry checked on read.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from aiocache.base import BaseCache
from aiocache.serializers import NullSerializer


class BoundedMemoryCache(BaseCache):  # type: ignore[misc]
    NAME = "bounded-memory"

    def __init__(self, max_entries: int, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(serializer=NullSerializer(encoding=None), **kwargs)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # key → (value, expires at)

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self.bytes -= len(value)

    async def _get(self, key: str, encoding: str | None = None, _conn: Any = None) -> bytes | None:
        return self.peek(key)

    def lookup(self, key: str) -> bytes | None:
        """`get` without aiocache's layers (key namespacing included): a memory lookup needs no
        await, and the wrappers cost more than the lookup on every cache hit."""
        return self.peek(self.build_key(key))

    def peek(self, key: str) -> bytes | None:
        """The value under an already namespaced key, None when absent or expired (then dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    async def _set(self, key: str, value: bytes, ttl: float | None = None, _cas_token: Any = None,
                   _conn: Any = None) -> bool:
        if len(value) > self.max_bytes:
            return False  # larger than the whole cache: not worth evicting everything for
        if key in self._entries:
            self._drop(key)
        expires = time.monotonic() + ttl if ttl else float("inf")
        self._entries[key] = (value, expires)
        self.bytes += len(value)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))  # least recently used first
        return True

    async def _delete(self, key: str, _conn: Any = None) -> int:
        if key in self._entries:
            self._drop(key)
            return 1
        return 0

    async def _exists(self, key: str, _conn: Any = None) -> bool:
        return await self._get(key) is not None

    async def _clear(self, namespace: str | None = None, _conn: Any = None) -> bool:
        for key in [k for k in self._entries if not namespace or k.startswith(namespace)]:
            self._drop(key)
        return True

    async def _close(self, *args: Any, _conn: Any = None, **kwargs: Any) -> None:
        self._entries.clear()
        self.bytes = 0
