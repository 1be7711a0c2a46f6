"""Stage: try each candidate in order until one answers (DESIGN.md, routing semantics 4-5)."""

from __future__ import annotations

from collections.abc import Awaitable

from proxy.api.errors import ProxyError
from proxy.observability.metrics import Metrics
from proxy.pipeline.call import Attempt, Call, Target
from proxy.pipeline.stage import Next
from proxy.providers.base import Result, UpstreamError

# A client mistake (400/401/403/404/422) would fail the same way on every model: returned as is.
_FALLBACK_KINDS = frozenset({"timeout", "connection", "protocol"})


def should_fall_back(err: UpstreamError) -> bool:
    return err.kind in _FALLBACK_KINDS or err.status in (408, 429) or err.status >= 500


def _describe(attempts: list[Attempt]) -> str:
    return ", ".join(f"{a.model} → {a.status}" for a in attempts)


class Fallback:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, call: Call, next: Next) -> Awaitable[Result]:
        route = call.route
        assert route is not None
        if len(route.candidates) == 1 and route.retry is None:
            # Nothing to fall back to and nothing to sum up: the one attempt's outcome is the answer.
            call.target = route.candidates[0]
            return next(call)
        return self._in_turn(call, next, route.candidates)

    async def _in_turn(self, call: Call, next: Next, candidates: list[Target]) -> Result:
        last: UpstreamError | None = None
        for position, target in enumerate(candidates):
            call.target = target
            try:
                result = await next(call)
            except UpstreamError as err:
                if not should_fall_back(err):
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
                f"All {len(call.attempts)} attempts failed ({_describe(call.attempts)}); last: {last.message}",
                type=last.type,
                code=last.code,
            )
        raise last
