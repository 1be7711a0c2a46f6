"""Everything a running proxy needs, built from one Config. A reload builds a new Runtime and
swaps it in; requests already running keep the one they started with."""

from __future__ import annotations

from proxy.cache.store import ResponseCache
from proxy.config import Config
from proxy.observability.metrics import Metrics
from proxy.pipeline import build_pipeline
from proxy.pipeline.auth import KeyRing
from proxy.pipeline.routing import TargetResolver
from proxy.pipeline.stage import Next
from proxy.prompts import PromptRegistry
from proxy.providers.base import Connector
from proxy.providers.registry import connector_class


class Runtime:
    """Built synchronously (so a bad config fails before anything opens); `start` opens pools."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.keys = KeyRing(config.auth.keys)
        self.resolve = TargetResolver(config)
        self.prompts = PromptRegistry.load(config.prompts.dir)
        self.cache = ResponseCache(config.cache)
        self.connectors: dict[str, Connector] = {
            name: connector_class(provider.type)(name, provider) for name, provider in config.providers.items()
        }
        self.pipeline: Next = build_pipeline(self)

    async def start(self) -> None:
        for connector in self.connectors.values():
            await connector.start()

    async def close(self) -> None:
        for connector in self.connectors.values():
            await connector.close()
        await self.cache.close()
