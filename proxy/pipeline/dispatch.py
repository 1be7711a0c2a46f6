"""The last step: hand the attempt to the connector of the target's provider."""

from __future__ import annotations

import time

from proxy.pipeline.call import Call
from proxy.providers.base import Connector, Result


class Dispatch:
    def __init__(self, connectors: dict[str, Connector]) -> None:
        self.connectors = connectors

    async def __call__(self, call: Call) -> Result:
        target = call.target
        assert target is not None
        connector = self.connectors[target.provider]
        started = time.perf_counter()
        try:
            if call.request.stream:
                return await connector.stream(call, target)
            return await connector.complete(call, target)
        finally:
            call.upstream_seconds += time.perf_counter() - started
