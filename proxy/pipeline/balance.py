"""Stage: the ordered list of candidates — a weighted draw when a load balancer is given
(`model` is then ignored), else `model` — followed by the fallbacks."""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Awaitable
from itertools import accumulate

from proxy.core.target import Target
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome


def weighted_pick(weighted: list[tuple[Target, float]], draw: float) -> Target:
    """`draw` in [0, 1); weights are normalised, so 0.7/0.3 and 7/3 split the same way."""
    bounds = list(accumulate(weight for _, weight in weighted))
    index = bisect_right(bounds, draw * bounds[-1])
    return weighted[min(index, len(weighted) - 1)][0]


class BalanceStage:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.random = (rng or random.Random()).random

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        route = call.route
        assert route is not None
        first = weighted_pick(route.weighted, self.random()) if route.weighted else route.model
        assert first is not None  # decode guarantees `model` or a load balancer
        route.candidates = [first, *route.fallbacks]
        return next(call)
