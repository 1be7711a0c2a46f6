"""SIGHUP: re-read the config file and swap in a new Runtime without dropping a request.

Requests already running keep the Runtime they started with (the handler captured it); the old
one is closed once they are all done. A config that does not load, or a Runtime that does not
start, is rejected with one error line and the old config keeps serving.
"""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.config import Config, ConfigError, load_config
from proxy.observability.logging import configure_logging
from proxy.runtime import Runtime
from proxy.server.drain import Tracker
from proxy.server.state import Server

# Settings a running process cannot change: the sockets are bound, the workers forked.
_RESTART_ONLY = ("host", "port", "workers", "metrics", "max_body_bytes", "header_timeout_seconds",
                 "idle_timeout_seconds", "max_connections")


def restart_only_changes(old: Config, new: Config) -> list[str]:
    return [f"server.{name}" for name in _RESTART_ONLY
            if getattr(old.server, name) != getattr(new.server, name)]


class Reloader:
    def __init__(self, server: Server, tracker: Tracker, logger: Any) -> None:
        self.server = server
        self.tracker = tracker
        self.logger = logger
        self._lock = asyncio.Lock()  # two quick SIGHUPs reload twice, one after the other
        self.retiring: set[asyncio.Task[None]] = set()

    async def reload(self) -> bool:
        async with self._lock:
            return await self._reload()

    async def _reload(self) -> bool:
        server, old = self.server, self.server.runtime
        path = old.config.source
        try:
            config = load_config(path)
        except ConfigError as err:
            self.logger.error(f"config reload failed, keeping the running config: {err}", config=path)
            return False
        config.server.workers = old.config.server.workers  # --workers on the command line still wins
        runtime: Runtime | None = None
        # Same cache settings: keep the cache (a memory cache would otherwise start empty).
        shared_cache = old.cache if config.cache == old.config.cache else None
        # Same breaker settings: keep the circuits and load figures (a dead provider stays skipped).
        shared_health = (old.load, old.breakers) if config.breakers == old.config.breakers else None
        try:
            runtime = Runtime(config, old.metrics, cache=shared_cache, health=shared_health)
            await runtime.start()
        except Exception as err:  # noqa: BLE001 - any failure must leave the old runtime serving
            self.logger.error(f"config reload failed, keeping the running config: {path}: {err!r}", config=path)
            if runtime is not None:
                await runtime.close()
            return False
        old.metrics.add_providers(config.providers)
        if shared_cache is not None:
            old.hand_over_cache()
        if shared_health is not None:
            old.hand_over_health()
        server.runtime = runtime  # new requests use it from now on
        if config.logging != old.config.logging:
            configure_logging(config.logging)
        ignored = restart_only_changes(old.config, config)
        if ignored:
            self.logger.warning("config changes that need a restart were not applied", keys=ignored)
        task = asyncio.create_task(self._retire(old))
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)
        self.logger.info("config reloaded", config=path, providers=sorted(config.providers),
                         keys=len(config.auth.keys), aliases=len(config.aliases))
        return True

    async def _retire(self, old: Runtime) -> None:
        # Requests are bounded by max_request_seconds, so waiting that long drops none of them.
        limits = old.config.server
        left = await self.tracker.wait(limits.max_request_seconds + limits.shutdown_grace_seconds, old)
        if left:
            self.logger.warning("closing the previous runtime with requests still running", requests=left)
        await old.close()

    async def close(self) -> None:
        """At shutdown, once every request is over: the old runtimes close at once."""
        if self.retiring:
            await asyncio.wait(list(self.retiring), timeout=5)
