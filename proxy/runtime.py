"""Everything a running proxy needs, built from one Config. A reload builds a new Runtime and
swaps it in; requests already running keep the one they started with."""

from __future__ import annotations

from proxy.cache.store import ResponseCache
from proxy.config import Config
from proxy.health.breakers import Breakers
from proxy.knowledge.service import KnowledgeService
from proxy.limits.service import Limiter
from proxy.observability.metrics import Metrics
from proxy.pipeline.auth import KeyRing
from proxy.pipeline.build import build_pipeline
from proxy.pipeline.routing import TargetResolver
from proxy.pipeline.stage import Next
from proxy.prompts import PromptRegistry
from proxy.providers.base import Connector
from proxy.providers.registry import connector_class
from proxy.routing.balancing import LoadStats


class Runtime:
    """Built synchronously (so a bad config fails before anything opens); `start` opens pools."""

    def __init__(self, config: Config, metrics: Metrics, cache: ResponseCache | None = None,
                 health: tuple[LoadStats, Breakers | None] | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.keys = KeyRing(config.auth.keys)
        metrics.add_keys(k.name for k in config.auth.keys)
        self.limiter = Limiter(config, metrics)
        self.resolve = TargetResolver(config)
        self.prompts = PromptRegistry.load(config.prompts.dir)
        # A reload with unchanged cache settings hands over the running cache (see hand_over).
        self.cache = cache or ResponseCache(config.cache)
        self.owns_cache = True
        # Load figures and circuits outlive a reload with the same breaker settings (hand_over_health).
        if health is not None:
            self.load, self.breakers = health
        else:
            self.load = LoadStats()
            self.breakers = Breakers(config.breakers, metrics) if config.breakers is not None else None
        self.owns_breakers = True
        self.connectors: dict[str, Connector] = {
            name: connector_class(provider.type)(name, provider) for name, provider in config.providers.items()
        }
        # Knowledge bases only when the config has a `knowledge:` section (README, "Knowledge bases").
        self.knowledge = KnowledgeService(config, self.connectors) if config.knowledge is not None else None
        self.pipeline: Next = build_pipeline(self)

    async def start(self) -> None:
        if self.knowledge is not None:
            await self.knowledge.start()
        for connector in self.connectors.values():
            await connector.start()

    def hand_over_cache(self) -> None:
        """The next runtime took this one's cache: closing this one must leave it open."""
        self.owns_cache = False

    def hand_over_health(self) -> None:
        """The next runtime took this one's load figures and circuits."""
        self.owns_breakers = False

    async def close(self) -> None:
        for connector in self.connectors.values():
            await connector.close()
        if self.owns_cache:
            await self.cache.close()
        if self.owns_breakers and self.breakers is not None:
            await self.breakers.close()
        await self.limiter.close()
        if self.knowledge is not None:
            await self.knowledge.close()
