"""Stage: the ordered list of candidates — one member drawn from each pool of the route (the
load balancer, `model` or its group, then each fallback), by the pool's strategy
(proxy.routing.balancing). With circuit breakers, only members whose circuit is not open are
drawn; a pool with none left keeps one, which the fallback stage then skips at once."""

from __future__ import annotations

import random
from collections.abc import Awaitable

from proxy.core.target import Target
from proxy.health.breakers import Breakers
from proxy.health.circuit import CLOSED, State
from proxy.pipeline.call import Call
from proxy.pipeline.routing import Pool
from proxy.pipeline.stage import Next, Outcome
from proxy.routing.balancing import LoadStats, pick, weighted_pick

__all__ = ["BalanceStage", "weighted_pick"]


class BalanceStage:
    def __init__(self, stats: LoadStats | None = None, breakers: Breakers | None = None,
                 rng: random.Random | None = None) -> None:
        self.random = (rng or random.Random()).random
        self.stats = stats or LoadStats()
        self.breakers = breakers

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        route = call.route
        assert route is not None and route.pools  # decode guarantees `model` or a load balancer
        if self.breakers is not None:
            return self._healthy(call, next)
        route.candidates = [pick(pool.strategy, pool.members, self.stats, self.random) for pool in route.pools]
        return next(call)

    async def _healthy(self, call: Call, next: Next) -> Outcome:
        route = call.route
        assert route is not None and self.breakers is not None
        views = await self.breakers.snapshot(target for pool in route.pools for target, _ in pool.members)
        route.health = views
        candidates = []
        for pool in route.pools:
            healthy = [member for member in pool.members if views[member[0]].state is not State.open]
            candidates.append(pick(pool.strategy, healthy or pool.members, self.stats, self.random))
        route.candidates = candidates
        return await next(call)

    def redraw(self, call: Call, pool: Pool, refused: set[Target]) -> Target | None:
        """Another member of the pool when the drawn one was refused (a half-open circuit whose
        probes are all out): a group's healthy members serve while one of them is probed."""
        route = call.route
        assert route is not None
        rest = [member for member in pool.members if member[0] not in refused
                and route.health.get(member[0], CLOSED).state is not State.open]
        return pick(pool.strategy, rest, self.stats, self.random) if rest else None
