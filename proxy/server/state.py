"""What the aiohttp app carries: the current Runtime and the process-wide pieces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxy.runtime import Runtime
from proxy.server.request_metrics import RequestMetrics

if TYPE_CHECKING:
    from proxy.server.drain import Tracker


class Server:
    def __init__(self, runtime: Runtime, metrics: RequestMetrics, logger: Any) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.logger = logger
        self.draining = False
        self.tracker: Tracker | None = None  # set by the runner; absent in a bare test app


SERVER: web.AppKey[Server] = web.AppKey("switchyard_server", Server)
