"""Counters in this process: for a single instance (the config refuses it with several
workers). The same arithmetic as the Redis script, with the same keys."""

from __future__ import annotations

import time
from collections.abc import Sequence

from proxy.limits.rules import Check
from proxy.limits.store import (
    CONCURRENCY_RETRY_MS,
    WINDOW_MS,
    Admission,
    floor_remaining,
    window_estimate,
    window_reset,
    window_wait,
)


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}  # window buckets and budgets
        self.expiry: dict[str, float] = {}  # ms
        self.slots: dict[str, dict[str, float]] = {}  # counter -> slot -> expiry ms
        self.swept = 0.0

    def _sweep(self, now: float) -> None:
        """Past minutes' buckets are never read again: drop what expired, once a minute."""
        if now - self.swept < WINDOW_MS:
            return
        self.swept = now
        for key in [k for k, until in self.expiry.items() if until <= now]:
            self.values.pop(key, None)
            del self.expiry[key]
        for counter in [c for c, slots in self.slots.items() if not self._live_slots(c, now)]:
            del self.slots[counter]

    def _get(self, key: str, now: float) -> float:
        if key in self.expiry and self.expiry[key] <= now:
            self.values.pop(key, None)
            self.expiry.pop(key, None)
        return self.values.get(key, 0.0)

    def _add(self, key: str, amount: float, now: float, ttl_ms: float) -> float:
        value = self._get(key, now) + amount
        self.values[key] = value
        self.expiry[key] = now + ttl_ms
        return value

    def _live_slots(self, counter: str, now: float) -> dict[str, float]:
        slots = self.slots.setdefault(counter, {})
        for slot in [s for s, until in slots.items() if until <= now]:
            del slots[slot]  # an instance that never released it: expired
        return slots

    async def admit(self, checks: Sequence[Check], slot: str, slot_ttl_ms: int) -> Admission:
        now = time.time() * 1000
        self._sweep(now)
        bucket = int(now // WINDOW_MS)
        elapsed = now - bucket * WINDOW_MS
        result = Admission(-1, 0.0, [], [])
        seen: list[tuple[float, float, float]] = []
        for i, check in enumerate(checks):
            code, limit = check.code, check.limit
            prev = curr = value = 0.0  # value: the window's estimate, the slots taken, the spend
            if code in ("r", "t"):
                prev = self._get(f"{check.counter}:{bucket - 1}", now)
                curr = self._get(f"{check.counter}:{bucket}", now)
                value = window_estimate(prev, curr, elapsed)
                ok = value + 1 <= limit
                wait = 0.0 if ok else window_wait(prev, curr, elapsed, limit)
            elif code == "c":
                value = len(self._live_slots(check.counter, now))
                ok = value + 1 <= limit
                wait = CONCURRENCY_RETRY_MS
            else:
                value = self._get(check.counter, now)
                ok = value < limit
                wait = -1.0
            if not ok and result.denied < 0:
                result.denied, result.retry_after_ms = i, wait
            seen.append((prev, curr, value))
        used = 1 if result.denied < 0 else 0  # all or nothing, as the Redis script
        for check, (prev, curr, value) in zip(checks, seen, strict=True):
            code, limit, reset = check.code, check.limit, 0.0
            if code in ("r", "t"):
                add = used if code == "r" else 0
                remaining = floor_remaining(limit - value - add)
                reset = window_reset(prev, curr + add, elapsed)
                if add:
                    self._add(f"{check.counter}:{bucket}", 1, now, 2 * WINDOW_MS + 1000)
            elif code == "c":
                remaining = max(0.0, limit - value - used)
                if used:
                    self._live_slots(check.counter, now)[slot] = now + slot_ttl_ms
            else:
                remaining = max(0.0, limit - value)
            result.remaining.append(remaining)
            result.reset_ms.append(reset)
        return result

    async def finish(self, checks: Sequence[Check], slot: str, tokens: int, cost: float) -> list[float]:
        now = time.time() * 1000
        bucket = int(now // WINDOW_MS)
        spent: list[float] = []
        for check in checks:
            code, value = check.code, 0.0
            if code == "c":
                self.slots.get(check.counter, {}).pop(slot, None)
            elif code == "t" and tokens > 0:
                self._add(f"{check.counter}:{bucket}", tokens, now, 2 * WINDOW_MS + 1000)
            elif code == "bt":
                value = self._add(check.counter, tokens, now, check.ttl_ms)
            elif code == "bc":
                value = self._add(check.counter, cost, now, check.ttl_ms)
            spent.append(value)
        return spent

    async def close(self) -> None:
        return None
