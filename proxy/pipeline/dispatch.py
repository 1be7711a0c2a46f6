"""The last step: hand the attempt to the connector of the target's provider.

A plain function returning the connector's coroutine, so it adds no frame to the chain every
I/O resumption walks; the retry stage around it times each attempt."""

from __future__ import annotations

from collections.abc import Awaitable

from proxy.core.stream import CallContext
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Outcome
from proxy.providers.base import Connector


class DispatchStage:
    def __init__(self, connectors: dict[str, Connector]) -> None:
        self.connectors = connectors

    def __call__(self, call: Call) -> Awaitable[Outcome]:
        target = call.target
        assert target is not None
        connector = self.connectors[target.provider]
        ctx = CallContext(call.request_id, call.deadline, call.surface.wire)
        if call.chat.stream:
            return connector.stream(call.chat, target, ctx)
        return connector.complete(call.chat, target, ctx)
