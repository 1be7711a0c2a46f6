"""Stage: the key's limits (README, "Limits and usage"), right after authorisation, so a
refused model is a 403 before it counts against anything. The request is settled by the
handler's `finally` (`Limiter.finish`), because a stream ends long after this stage returns."""

from __future__ import annotations

from collections.abc import Awaitable

from proxy.limits.rules import Check
from proxy.limits.service import Limiter
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome


class LimitStage:
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        checks = self.limiter.plan(call)
        if not checks:  # a key without limits: no frame of ours on the request's path
            return next(call)
        return self._limited(call, checks, next)

    async def _limited(self, call: Call, checks: list[Check], next: Next) -> Outcome:
        await self.limiter.admit(call, checks)
        return await next(call)
