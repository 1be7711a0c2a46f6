"""The limiter a request meets right after authorisation, and the accounting when it ends.

`admit` checks every counter of the key in one atomic step and takes a concurrency slot;
`finish` runs in the handler's `finally` on every path (success, error, timeout, client
disconnect, drain): it releases the slot and adds the usage, in one step again. A slot also
expires on its own after `limits.slot_ttl_seconds`, so a crashed instance cannot hold one.

When the store is unreachable the configured `on_redis_error` decides (fail_open: admit
unchecked; fail_closed: 503), and a metric, a log line (at most one per 10 s) and the
`SwitchyardLimiterDegraded` alert say so. There is no fallback to counting per process.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from proxy.config import Config
from proxy.core.errors import ErrorCode, ErrorType, ProxyError
from proxy.limits.headers import ratelimit_headers
from proxy.limits.memory_store import MemoryStore
from proxy.limits.pricing import Pricing
from proxy.limits.rules import BUDGETS, Check, Rules, period_end
from proxy.limits.store import Admission, Store
from proxy.observability.metrics import Metrics

TICKET = "_limits"  # where a request's ticket rides in `Call.log` (never written to the log)
HEADERS = "ratelimit_headers"  # the x-ratelimit-* headers for every answer of a limited key
_PAUSE_SECONDS = 1.0  # after a store error, skip it this long: an outage costs one timeout
_LOG_EVERY_SECONDS = 10.0
_log = structlog.get_logger("switchyard.limits")


class _Paused(ConnectionError):
    """The store failed a moment ago and is skipped until `paused_until`."""


@dataclass(slots=True)
class Ticket:
    key: str
    checks: list[Check] = field(default_factory=list)  # empty: nothing to settle in the store
    slot: str = ""
    limited: str | None = None  # the refusing limit's param


def _retry_after(check: Check, admission: Admission) -> str:
    wait_ms = admission.retry_after_ms
    if wait_ms < 0:  # a budget: until its period ends
        wait_ms = (period_end(check.kind).timestamp() - time.time()) * 1000
    return str(max(1, math.ceil(wait_ms / 1000)))


def _store(config: Config) -> Store:
    limits = config.limits
    if limits.backend == "redis":
        assert limits.redis_url is not None  # the config check fills it in or refuses
        # Imported only when configured: it loads redis-py (proxy/cache/__init__.py).
        from proxy.limits.redis_store import RedisStore

        return RedisStore(limits.redis_url, limits.timeout_seconds)
    return MemoryStore()


class Limiter:
    def __init__(self, config: Config, metrics: Metrics) -> None:
        limits = config.limits
        self.rules = Rules(limits, (k.name for k in config.auth.keys))
        self.pricing = Pricing(config.pricing)
        self.metrics = metrics
        self.mode = limits.on_redis_error
        self.timeout = limits.timeout_seconds
        self.slot_ttl_ms = int((limits.slot_ttl_seconds or 60.0) * 1000)
        self.store: Store | None = _store(config) if self.rules.scopes else None
        self.paused_until = 0.0
        self.logged_at = 0.0
        self.degraded = False
        self._settling: set[asyncio.Task[None]] = set()

    # -- admission -----------------------------------------------------------------------------------
    def plan(self, call: Any) -> list[Check]:
        """The counters this request is checked against; none for a key without limits (the
        stage then adds no coroutine frame to the request)."""
        key = call.key
        if key is None or self.store is None or not self.rules.limited(key.name):
            return []
        models = [target.label for target, _ in call.route.named] if call.route is not None else []
        return self.rules.checks(key.name, models)

    async def admit(self, call: Any, checks: list[Check]) -> None:
        """Raises the 429 (or, failing closed, the 503); otherwise the call carries its ticket."""
        assert self.store is not None and call.key is not None
        key = call.key
        ticket = Ticket(key.name)
        call.log[TICKET] = ticket
        slot = f"{call.request_id}:{os.urandom(6).hex()}"
        try:
            admission = await self._call(self.store.admit(checks, slot, self.slot_ttl_ms))
        except Exception as err:  # noqa: BLE001 - any store failure is the configured choice
            self._unavailable(err)
            if self.mode == "fail_open":
                return
            raise ProxyError(503, "The rate limiter cannot reach its store; try again shortly",
                             type=ErrorType.upstream, code="rate_limiter_unavailable",
                             headers={"Retry-After": "1"}) from None
        headers = ratelimit_headers(checks, admission)
        call.log[HEADERS] = headers
        self._budgets(key.name, checks, [c.limit - r for c, r in zip(checks, admission.remaining, strict=True)])
        if admission.denied >= 0:
            check = checks[admission.denied]
            ticket.limited = check.param
            self.metrics.rate_limited(key=key.name, limit=check.kind)
            raise ProxyError(
                429, f"Rate limit reached for key {key.name!r}: {check.param} is {check.limit:g}",
                type=ErrorType.rate_limit, code=ErrorCode.rate_limit_exceeded, param=check.param,
                headers={**headers, "Retry-After": _retry_after(check, admission)},
            )
        ticket.checks, ticket.slot = checks, slot

    async def _call(self, step: Any) -> Any:
        if time.monotonic() < self.paused_until:
            step.close()
            raise _Paused("skipped after a recent store error")
        result = await asyncio.wait_for(step, self.timeout)
        if self.degraded:
            self.degraded = False
            self.metrics.limiter_ok()
            _log.warning("rate limiter store reachable again")
        return result

    def _unavailable(self, err: BaseException) -> None:
        self.metrics.limiter_unavailable(mode=self.mode)
        now = time.monotonic()
        if not isinstance(err, _Paused):
            self.paused_until = now + _PAUSE_SECONDS
        self.degraded = True
        if now - self.logged_at >= _LOG_EVERY_SECONDS:
            self.logged_at = now
            _log.error("rate limiter store unreachable", behaviour=self.mode, error=type(err).__name__,
                       detail=str(err)[:200])

    def _budgets(self, key: str, checks: list[Check], spent: list[float]) -> None:
        for check, value in zip(checks, spent, strict=True):
            if check.kind in BUDGETS:
                self.metrics.key_budget(key=key, budget=check.kind, scope=check.scope,
                                        remaining=check.limit - value)

    # -- the end of every request --------------------------------------------------------------------
    def finish(self, call: Any, status: int) -> asyncio.Future[None] | None:
        """Count the request and its usage (now, so its log event has the cost) and start
        settling it in the store: the slot's release and the usage, as one task the handler
        awaits last in its `finally`. A second cancellation (a drain's deadline) cancels only
        that wait, never the release."""
        if call.key is None:
            return None
        name = call.key.name
        usage = call.usage if call.cache_status != "hit" else None  # a cache hit cost nothing upstream
        tokens, cost = 0, 0.0
        metrics = self.metrics
        metrics.key_request(key=name, status=status)
        if usage is not None:
            served = call.served or call.target
            cost = self.pricing.cost(served.label, usage) if served is not None else 0.0
            tokens = usage.prompt_tokens + usage.completion_tokens
            metrics.key_usage(key=name, prompt=usage.prompt_tokens, completion=usage.completion_tokens,
                              reasoning=usage.reasoning_tokens, cost=cost)
            call.log["cost"] = round(cost, 9)
        ticket: Ticket | None = call.log.get(TICKET)
        if ticket is None or not ticket.checks or self.store is None:
            return None
        task = asyncio.ensure_future(self._settle(ticket, tokens, cost))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return asyncio.shield(task)

    async def _settle(self, ticket: Ticket, tokens: int, cost: float) -> None:
        assert self.store is not None
        try:
            spent = await self._call(self.store.finish(ticket.checks, ticket.slot, tokens, cost))
        except Exception as err:  # noqa: BLE001 - the slot expires on its own
            self._unavailable(err)
            return
        self._budgets(ticket.key, ticket.checks, spent)

    async def close(self) -> None:
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        if self.store is not None:
            await self.store.close()
