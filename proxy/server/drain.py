"""Which requests are running, on which Runtime: what a graceful drain and a reload wait for.

The completions handler records its task and the Runtime it started with. SIGTERM waits for
them up to the grace, then cancels the rest through `cancel_all`; handlers ask
`cancelled_by_drain` to tell that cancellation from a client that went away, and answer it
(a 503, or an in-band error event on a stream that already started).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from proxy.api.errors import ErrorCode, ErrorType, ProxyError
from proxy.runtime import Runtime
from proxy.server.state import Server


class Tracker:
    """The completions handler enters and leaves it (two dict operations a request); drain and
    reload, which are rare, poll it."""

    POLL_SECONDS = 0.05

    def __init__(self, server: Server) -> None:
        self.server = server
        self.running: dict[asyncio.Task[object], Runtime] = {}
        self.cancelled: set[asyncio.Task[object]] = set()  # tasks the drain cancelled

    def enter(self, runtime: Runtime) -> asyncio.Task[object] | None:
        task = asyncio.current_task()
        if task is not None:
            self.running[task] = runtime
        return task

    def leave(self, task: asyncio.Task[object] | None) -> None:
        if task is not None:
            self.running.pop(task, None)
            self.cancelled.discard(task)

    def count(self, runtime: Runtime | None = None) -> int:
        if runtime is None:
            return len(self.running)
        return sum(1 for used in self.running.values() if used is runtime)

    async def wait(self, timeout: float, runtime: Runtime | None = None) -> int:
        """Wait until the requests (of `runtime`, or all) are done; returns how many are left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = self.count(runtime)
            remaining = deadline - loop.time()
            if not left or remaining <= 0:
                return left
            await asyncio.sleep(min(self.POLL_SECONDS, remaining))

    def cancel_all(self) -> int:
        for task in list(self.running):
            self.cancelled.add(task)
            task.cancel()
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
