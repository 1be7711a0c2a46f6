"""Stage: try each candidate in order until one answers (README, "Routing semantics").

A candidate's final failure moves on to the next one when its status is in the request's
`fallback_on_codes` (orq's default: 408, 429, 500, 502, 503, 504, 529), or when it says the
prompt does not fit the model's context window (proxy.routing.context_window). A timeout counts
as 408, a connection or protocol failure as the 502 it is answered with; any other client
mistake (400, 401, 403, 404, 422) would fail the same way on every model and is returned as it is.

With circuit breakers, a candidate whose circuit is open is skipped without an upstream call,
and a half-open one is tried only as one of its bounded probes. When no candidate could be
called at all the answer is a 503 naming the open circuits (README, "Circuit breakers").
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from proxy.core.errors import ErrorType, ProxyError, UpstreamError
from proxy.core.target import Target
from proxy.health.breakers import Breakers
from proxy.health.circuit import CLOSED
from proxy.observability.metrics import Metrics
from proxy.pipeline.call import Attempt, Call
from proxy.pipeline.stage import Next, Outcome
from proxy.routing.context_window import is_context_window

if TYPE_CHECKING:
    from proxy.pipeline.balance import BalanceStage

DEFAULT_FALLBACK_CODES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504, 529})
_LISTED_ATTEMPTS = 10  # an error message names at most this many attempts


def should_fall_back(err: UpstreamError, codes: frozenset[int] = DEFAULT_FALLBACK_CODES) -> bool:
    return err.status in codes or is_context_window(err)


def describe(attempts: list[Attempt]) -> str:
    listed = ", ".join(f"{a.model} → {a.status}" for a in attempts[:_LISTED_ATTEMPTS])
    more = len(attempts) - _LISTED_ATTEMPTS
    return f"{listed} and {more} more" if more > 0 else listed


class FallbackStage:
    def __init__(self, metrics: Metrics, breakers: Breakers | None = None,
                 balance: BalanceStage | None = None) -> None:
        self.metrics = metrics
        self.breakers = breakers
        self.balance = balance  # to draw another member of a group when the drawn one is refused

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        route = call.route
        assert route is not None
        if len(route.candidates) == 1 and route.retry is None and self.breakers is None:
            # Nothing to fall back to and nothing to sum up: the one attempt's outcome is the answer.
            call.target = route.candidates[0]
            return next(call)
        return self._in_turn(call, next, route.candidates, route.fallback_codes)

    async def _in_turn(self, call: Call, next: Next, candidates: list[Target], codes: frozenset[int]) -> Outcome:
        route = call.route
        assert route is not None
        last: UpstreamError | None = None
        skipped: list[tuple[Target, float]] = []  # circuits open: (candidate, seconds until a probe)
        for position, drawn in enumerate(candidates):
            target = drawn if self.breakers is None else await self._admitted(call, position, drawn, skipped)
            if target is None:
                continue
            call.target = target
            try:
                result = await next(call)
            except UpstreamError as err:
                if not should_fall_back(err, codes):
                    raise
                last = err
                if position + 1 < len(candidates):
                    self.metrics.fallback(provider=target.provider, model=target.model)
                continue
            return result
        if last is None:
            raise all_open(skipped)
        if len(call.attempts) > 1 or skipped:
            also = f"; circuit open: {', '.join(t.label for t, _ in skipped)}" if skipped else ""
            raise ProxyError(
                last.status,
                f"All {len(call.attempts)} attempts failed ({describe(call.attempts)}){also}; last: {last.message}",
                type=last.type,
                code=last.code,
            )
        raise last

    async def _admitted(self, call: Call, position: int, target: Target,
                        skipped: list[tuple[Target, float]]) -> Target | None:
        """The candidate, or another member of its group, that its circuit lets through now."""
        route = call.route
        assert route is not None and self.breakers is not None
        pool = route.pools[position] if len(route.pools) == len(route.candidates) else None
        refused: set[Target] = set()
        while True:
            admission = await self.breakers.admit(target, route.health.get(target, CLOSED))
            if admission.allowed:
                if admission.probe:
                    route.probes.add(target)
                return target
            skipped.append((target, admission.retry_in))
            call.log.setdefault("circuit_open", []).append(target.label)  # the request's log event says it
            refused.add(target)
            other = self.balance.redraw(call, pool, refused) if pool and self.balance else None
            if other is None:
                return None
            target = other


def all_open(skipped: list[tuple[Target, float]]) -> ProxyError:
    """No candidate could be called: a 503 at once, naming each open circuit, with the time
    until the first of them lets a probe through as Retry-After."""
    named = ", ".join(f"{target.label} (retry in {seconds:.1f} s)" if seconds > 0 else target.label
                      for target, seconds in dict(skipped).items())
    wait = min((seconds for _, seconds in skipped), default=0.0)
    return ProxyError(503, f"Every candidate's circuit breaker is open: {named}", type=ErrorType.upstream,
                      code="circuit_open", headers={"retry-after": str(max(1, round(wait)))})
