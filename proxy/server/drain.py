"""Which requests are running, on which Runtime: what a graceful drain and a reload wait for.

A middleware records every request's task and the Runtime it started with. SIGTERM waits for
them up to the grace, then cancels the rest through `cancel_all`; handlers ask
`cancelled_by_drain` to tell that cancellation from a client that went away, and answer it
(a 503, or an in-band error event on a stream that already started).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.api.errors import ErrorCode, ErrorType, ProxyError
from proxy.runtime import Runtime
from proxy.server.state import Server


@dataclass(eq=False)
class Running:
    task: asyncio.Task[object]
    runtime: Runtime
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Tracker:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.running: set[Running] = set()
        self.cancelled: set[asyncio.Task[object]] = set()  # tasks the drain cancelled

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        # Read server.runtime here, synchronously before the handler runs: the handler reads it
        # in its first line, so both see the same Runtime even when a reload swaps it.
        entry = Running(task, self.server.runtime)
        self.running.add(entry)
        try:
            return await handler(request)
        finally:
            self.running.discard(entry)
            self.cancelled.discard(task)
            entry.done.set_result(None)

    def using(self, runtime: Runtime | None = None) -> list[asyncio.Future[None]]:
        return [r.done for r in self.running if runtime is None or r.runtime is runtime]

    async def wait(self, timeout: float, runtime: Runtime | None = None) -> int:
        """Wait until the requests (of `runtime`, or all) are done; returns how many are left."""
        pending = self.using(runtime)
        if pending and timeout > 0:
            _, left = await asyncio.wait(pending, timeout=timeout)
            return len(left)
        return len(pending)

    def cancel_all(self) -> int:
        for entry in self.running:
            self.cancelled.add(entry.task)
            entry.task.cancel()
        return len(self.running)


TRACKER: web.AppKey[Tracker] = web.AppKey("switchyard_tracker", Tracker)


def cancelled_by_drain(request: web.Request) -> bool:
    """True when the current task's CancelledError comes from the drain, not from the client.

    It then un-cancels the task, so the handler can still write its answer."""
    tracker = request.app.get(TRACKER)
    task = asyncio.current_task()
    if tracker is None or task is None or task not in tracker.cancelled:
        return False
    tracker.cancelled.discard(task)
    task.uncancel()
    return True


def shutdown_error(request: web.Request) -> ProxyError:
    grace = request.app[TRACKER].server.runtime.config.server.shutdown_grace_seconds
    return ProxyError(503, f"The server is shutting down and the request did not finish within {grace:g} s",
                      type=ErrorType.timeout, code=ErrorCode.request_timeout)
