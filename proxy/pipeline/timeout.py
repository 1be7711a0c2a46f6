"""Stage: `timeout.call_timeout` bounds one attempt — for a stream, until its first chunk
(connectors return a stream only once that chunk is in). A timeout becomes a 408 failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from proxy.core.errors import timeout_error
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome


class TimeoutStage:
    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        assert call.route is not None
        seconds = call.route.call_timeout_seconds
        if seconds is None:
            return next(call)
        return self._bounded(call, next, seconds)

    async def _bounded(self, call: Call, next: Next, seconds: float) -> Outcome:
        assert call.target is not None
        try:
            async with asyncio.timeout(seconds):
                return await next(call)
        except TimeoutError:
            raise timeout_error(call.target.label, seconds) from None
