"""The last step: hand the attempt to the connector of the target's provider.

A plain function returning the connector's coroutine, so it adds no frame to the chain every
I/O resumption walks; the retry stage around it times each attempt."""

from __future__ import annotations

from collections.abc import Awaitable

from proxy.pipeline.call import Call
from proxy.providers.base import Connector, Result


class Dispatch:
    def __init__(self, connectors: dict[str, Connector]) -> None:
        self.connectors = connectors

    def __call__(self, call: Call) -> Awaitable[Result]:
        target = call.target
        assert target is not None
        connector = self.connectors[target.provider]
        if call.request.stream:
            return connector.stream(call, target)
        return connector.complete(call, target)
