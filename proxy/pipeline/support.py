"""Stage: refuse, before any upstream call, a request that some model it may reach cannot
honour (a 400 naming the field and the provider), so a fallback never turns a clear client
error into a different answer (proxy.providers.params)."""

from __future__ import annotations

from collections.abc import Awaitable

from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome
from proxy.providers.base import Connector


class SupportStage:
    def __init__(self, connectors: dict[str, Connector]) -> None:
        self.connectors = connectors

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        route = call.route
        assert route is not None
        for target, _param in route.named:
            self.connectors[target.provider].check(call.chat, target)
        return next(call)
