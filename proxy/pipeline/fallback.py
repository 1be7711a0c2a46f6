"""Stage: try each candidate in order until one answers (README, "Routing semantics").

A candidate's final failure moves on to the next one when its status is in the request's
`fallback_on_codes` (orq's default: 408, 429, 500, 502, 503, 504, 529). A timeout counts as 408,
a connection or protocol failure as the 502 it is answered with; a client mistake (400, 401,
403, 404, 422) would fail the same way on every model and is returned as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable

from proxy.core.errors import ProxyError, UpstreamError
from proxy.core.target import Target
from proxy.observability.metrics import Metrics
from proxy.pipeline.call import Attempt, Call
from proxy.pipeline.stage import Next, Outcome

DEFAULT_FALLBACK_CODES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504, 529})
_LISTED_ATTEMPTS = 10  # an error message names at most this many attempts


def should_fall_back(err: UpstreamError, codes: frozenset[int] = DEFAULT_FALLBACK_CODES) -> bool:
    return err.status in codes


def describe(attempts: list[Attempt]) -> str:
    listed = ", ".join(f"{a.model} → {a.status}" for a in attempts[:_LISTED_ATTEMPTS])
    more = len(attempts) - _LISTED_ATTEMPTS
    return f"{listed} and {more} more" if more > 0 else listed


class FallbackStage:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        route = call.route
        assert route is not None
        if len(route.candidates) == 1 and route.retry is None:
            # Nothing to fall back to and nothing to sum up: the one attempt's outcome is the answer.
            call.target = route.candidates[0]
            return next(call)
        return self._in_turn(call, next, route.candidates, route.fallback_codes)

    async def _in_turn(self, call: Call, next: Next, candidates: list[Target], codes: frozenset[int]) -> Outcome:
        last: UpstreamError | None = None
        for position, target in enumerate(candidates):
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
        assert last is not None
        if len(call.attempts) > 1:
            raise ProxyError(
                last.status,
                f"All {len(call.attempts)} attempts failed ({describe(call.attempts)}); last: {last.message}",
                type=last.type,
                code=last.code,
            )
        raise last
