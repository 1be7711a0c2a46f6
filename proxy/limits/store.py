"""What a counter store answers, and the window arithmetic both stores share.

Requests and tokens per minute use a sliding window counter: one counter per fixed minute, and
the estimate of the last 60 seconds is `previous × (1 − elapsed/60 s) + current` — exact while
traffic is even, never more than one minute's count off, and two small counters per limit
however busy the key is. A request is admitted while `estimate + 1 ≤ limit` (for tokens: while
at least one token is left; a request's tokens are added when its usage is known, so the one
request that crosses the limit finishes and the next ones wait).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from proxy.limits.rules import Check

WINDOW_MS = 60_000
CONCURRENCY_RETRY_MS = 1_000  # a slot frees when some request ends: no better guess


@dataclass(slots=True)
class Admission:
    denied: int  # index of the check that refused, -1 when admitted
    retry_after_ms: float  # for the refusing check; -1 for a budget (its period's end)
    remaining: list[float]  # per check, after this request
    reset_ms: list[float]  # per check: until the counter is back to zero


class Store(Protocol):
    async def admit(self, checks: Sequence[Check], slot: str, slot_ttl_ms: int) -> Admission: ...

    async def finish(self, checks: Sequence[Check], slot: str, tokens: int, cost: float) -> list[float]:
        """Release the slot and add the usage, in one step; the budgets' spend afterwards (or
        0.0 for a check that is not a budget)."""
        ...

    async def close(self) -> None: ...


def window_estimate(prev: float, curr: float, elapsed: float) -> float:
    return prev * (1 - elapsed / WINDOW_MS) + curr


def window_wait(prev: float, curr: float, elapsed: float, limit: float) -> float:
    """Milliseconds until `estimate + 1 ≤ limit` (mirrored in the Redis script)."""
    room = limit - 1
    if curr <= room:
        if prev <= 0:
            return 0.0
        at = WINDOW_MS * (1 - (room - curr) / prev)
        return max(0.0, at - elapsed)
    return (WINDOW_MS - elapsed) + WINDOW_MS * (1 - room / curr)


def window_reset(prev: float, curr: float, elapsed: float) -> float:
    if curr > 0:
        return (WINDOW_MS - elapsed) + WINDOW_MS
    if prev > 0:
        return WINDOW_MS - elapsed
    return 0.0


def floor_remaining(value: float) -> float:
    return max(0.0, math.floor(value + 1e-9))
