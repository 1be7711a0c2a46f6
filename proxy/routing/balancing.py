"""Balancing strategies: which member of a group serves the next request (README, "Routing policy").

* `weighted`: a draw by normalised weight (0.7/0.3 and 7/3 split the same way).
* `least_busy`: the member with the fewest attempts in flight from this process; ties are drawn
  by weight.
* `latency`: power of two choices — two members drawn by weight, the one with the lower cost
  kept, where cost is the EWMA of its time to first token times (its attempts in flight + 1).
  A member never measured costs nothing, so it is tried; a measurement fades with a half-life,
  so a member that was slow once is tried again later rather than starved for ever.

Every strategy draws only among the members it is given: the balance stage passes the healthy
ones (circuit not open).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate

from proxy.core.target import Target

Members = Sequence[tuple[Target, float]]
Draw = Callable[[], float]  # uniform in [0, 1)

EWMA_ALPHA = 0.3  # weight of the newest measurement
EWMA_HALF_LIFE_SECONDS = 60.0  # an old measurement counts half after this long
_MAX_TRACKED = 4096  # bounded: a model name can come from a client


def weighted_pick(members: Members, draw: float) -> Target:
    """`draw` in [0, 1); weights are normalised."""
    bounds = list(accumulate(weight for _, weight in members))
    index = bisect_right(bounds, draw * bounds[-1])
    return members[min(index, len(members) - 1)][0]


class LoadStats:
    """Per target: attempts in flight in this process, and the EWMA of time to first token
    (the whole answer's time for a non-stream). Fed by the retry stage's attempt observers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.in_flight: dict[Target, int] = {}
        self._ewma: dict[Target, tuple[float, float]] = {}  # target -> (seconds, measured at)
        self.clock = clock

    def started(self, target: Target) -> None:
        if target in self.in_flight or len(self.in_flight) < _MAX_TRACKED:
            self.in_flight[target] = self.in_flight.get(target, 0) + 1

    def ended(self, target: Target) -> None:
        count = self.in_flight.get(target)
        if count is not None:
            if count <= 1:
                del self.in_flight[target]
            else:
                self.in_flight[target] = count - 1

    def measured(self, target: Target, seconds: float) -> None:
        now = self.clock()
        old = self._ewma.get(target)
        if old is None:
            if len(self._ewma) >= _MAX_TRACKED:
                return
            self._ewma[target] = (seconds, now)
            return
        previous = self._faded(old, now)
        self._ewma[target] = (EWMA_ALPHA * seconds + (1 - EWMA_ALPHA) * previous, now)

    def latency(self, target: Target) -> float:
        """The faded EWMA in seconds; 0 for a target never measured."""
        entry = self._ewma.get(target)
        return 0.0 if entry is None else self._faded(entry, self.clock())

    @staticmethod
    def _faded(entry: tuple[float, float], now: float) -> float:
        seconds, at = entry
        return seconds * math.pow(0.5, max(0.0, now - at) / EWMA_HALF_LIFE_SECONDS)

    def busy(self, target: Target) -> int:
        return self.in_flight.get(target, 0)


def pick(strategy: str, members: Members, stats: LoadStats, draw: Draw) -> Target:
    """One member of a non-empty list, by the named strategy."""
    if len(members) == 1:
        return members[0][0]
    if strategy == "least_busy":
        fewest = min(stats.busy(target) for target, _ in members)
        idle = [(target, weight) for target, weight in members if stats.busy(target) == fewest]
        return weighted_pick(idle, draw())
    if strategy == "latency":
        first = weighted_pick(members, draw())
        rest = [(target, weight) for target, weight in members if target != first]
        second = weighted_pick(rest, draw()) if rest else first
        return min((first, second), key=lambda target: stats.latency(target) * (stats.busy(target) + 1))
    return weighted_pick(members, draw())
