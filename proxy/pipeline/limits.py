"""Stage: the key's limits (README, "Limits and usage"), right after authorisation, so a
refused model is a 403 before it counts against anything. The request is settled by the
handler's `finally` (`Limiter.finish`), because a stream ends long after this stage returns."""

from __future__ import annotations

from proxy.limits.service import Limiter
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome


class LimitStage:
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    async def __call__(self, call: Call, next: Next) -> Outcome:
        await self.limiter.admit(call)
        return await next(call)
