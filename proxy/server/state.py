"""What the aiohttp app carries: the current Runtime and the process-wide pieces."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.observability.request_metrics import RequestMetrics
from proxy.runtime import Runtime


class Server:
    def __init__(self, runtime: Runtime, metrics: RequestMetrics, logger: Any) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.logger = logger
        self.draining = False


SERVER: web.AppKey[Server] = web.AppKey("switchyard_server", Server)
