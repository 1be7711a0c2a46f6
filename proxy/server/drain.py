"""Which requests are running, on which Runtime, until when: what a graceful drain, a reload and
`server.max_request_seconds` act on.

The completions handler enters and leaves the tracker (two dict operations a request). Two
things may cancel a request's task: the drain, once SIGTERM's grace is over, and the deadline
sweep, once `max_request_seconds` is over — one sweep a tenth of a second for all requests,
instead of a timer armed and disarmed by every request. The handler asks `cancelled_by` which
of them it was (None: the client went away) and answers it: a 503 or a 504, or one in-band
error event on a stream that already started.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web

from proxy.core.errors import ErrorCode, ErrorType, ProxyError
from proxy.runtime import Runtime
from proxy.server.state import Server

Reason = Literal["drain", "deadline"]


class Tracker:
    POLL_SECONDS = 0.05
    SWEEP_SECONDS = 0.1

    def __init__(self, server: Server) -> None:
        self.server = server
        self.running: dict[asyncio.Task[object], Runtime] = {}
        self.deadlines: dict[asyncio.Task[object], float] = {}  # loop time after which it is cancelled
        self.cancelled: dict[asyncio.Task[object], Reason] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def enter(self, runtime: Runtime, seconds: float) -> asyncio.Task[object] | None:
        task = asyncio.current_task()
        if task is not None:
            self.running[task] = runtime
            self.deadlines[task] = task.get_loop().time() + seconds
            if self._sweeper is None:
                self._sweeper = task.get_loop().create_task(self._sweep())
        return task

    def leave(self, task: asyncio.Task[object] | None) -> None:
        if task is not None:
            self.running.pop(task, None)
            self.deadlines.pop(task, None)
            self.cancelled.pop(task, None)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.SWEEP_SECONDS)
            now = loop.time()
            for task, deadline in list(self.deadlines.items()):
                if deadline <= now and task not in self.cancelled:
                    self.cancelled[task] = "deadline"
                    task.cancel()

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
            self.cancelled[task] = "drain"
            task.cancel()
        return len(self.running)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()


TRACKER: web.AppKey[Tracker] = web.AppKey("switchyard_tracker", Tracker)


def cancelled_by(request: web.Request) -> Reason | None:
    """Who cancelled the current task: the drain, the deadline, or (None) the client leaving.

    For the first two it un-cancels the task, so the handler can still write its answer."""
    tracker = request.app.get(TRACKER)
    task = asyncio.current_task()
    if tracker is None or task is None:
        return None
    reason = tracker.cancelled.pop(task, None)
    if reason is not None:
        task.uncancel()
    return reason


def cancellation_error(request: web.Request, reason: Reason) -> ProxyError:
    limits = request.app[TRACKER].server.runtime.config.server
    if reason == "deadline":
        return ProxyError(504, f"Request did not finish within server.max_request_seconds "
                          f"({limits.max_request_seconds:g} s)", type=ErrorType.timeout,
                          code=ErrorCode.request_timeout)
    return ProxyError(503, "The server is shutting down and the request did not finish within "
                      f"{limits.shutdown_grace_seconds:g} s", type=ErrorType.timeout,
                      code=ErrorCode.request_timeout)
