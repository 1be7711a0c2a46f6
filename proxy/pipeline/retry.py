"""Stage: retry one candidate while its failure's status is in `retry.on_codes`.

Backoff is exponential with equal jitter; a provider's `Retry-After` wins, capped so a hostile
or confused upstream cannot park a request. No retry is started that would end past the
request's deadline.

Each attempt is told to the attempt observers — metrics, the balancers' load figures, circuit
breakers — so what watches attempts grows by adding an observer, not by growing this loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Sequence
from typing import Protocol

from proxy.config import RoutingConfig
from proxy.core.errors import FailureKind, UpstreamError
from proxy.core.target import Target
from proxy.health.breakers import Breakers
from proxy.health.circuit import State
from proxy.observability.metrics import Metrics
from proxy.pipeline.call import Attempt, Call
from proxy.pipeline.stage import Next, Outcome
from proxy.routing.balancing import LoadStats

_STATUS_LABEL = {"timeout": "timeout", "connection": "connection_error", "protocol": "protocol_error"}


def outcome_label(err: UpstreamError) -> str:
    return _STATUS_LABEL.get(err.kind, str(err.status))


class AttemptObserver(Protocol):
    """Told of every upstream attempt. `finished` may return an awaitable that the stage awaits
    before deciding what comes next (a breaker must have counted a failure before the next
    request asks it)."""

    def started(self, call: Call, target: Target) -> None: ...

    def finished(self, call: Call, target: Target, seconds: float,
                 err: UpstreamError | None) -> Awaitable[None] | None: ...

    def cancelled(self, call: Call, target: Target, seconds: float) -> None: ...


class MetricsObserver:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def started(self, call: Call, target: Target) -> None:
        return None

    def finished(self, call: Call, target: Target, seconds: float, err: UpstreamError | None) -> None:
        self.metrics.upstream_finished(provider=target.provider, model=target.model,
                                       status="200" if err is None else outcome_label(err), duration_s=seconds)

    def cancelled(self, call: Call, target: Target, seconds: float) -> None:
        return None


class LoadObserver:
    """Attempts in flight per target (least-busy) and the EWMA of time to first token (latency):
    a stream's attempt ends at its first content, so its duration is that time."""

    def __init__(self, stats: LoadStats) -> None:
        self.stats = stats

    def started(self, call: Call, target: Target) -> None:
        self.stats.started(target)

    def finished(self, call: Call, target: Target, seconds: float, err: UpstreamError | None) -> None:
        self.stats.ended(target)
        if err is None or err.kind is FailureKind.timeout:  # a timeout is slowness too
            self.stats.measured(target, seconds)

    def cancelled(self, call: Call, target: Target, seconds: float) -> None:
        self.stats.ended(target)


class BreakerObserver:
    def __init__(self, breakers: Breakers) -> None:
        self.breakers = breakers

    def started(self, call: Call, target: Target) -> None:
        return None

    def finished(self, call: Call, target: Target, seconds: float,
                 err: UpstreamError | None) -> Awaitable[None]:
        return self._record(call, target, err)

    async def _record(self, call: Call, target: Target, err: UpstreamError | None) -> None:
        route = call.route
        assert route is not None
        probe = target in route.probes
        route.probes.discard(target)
        if await self.breakers.finished(target, err, probe) is State.open:
            route.tripped.add(target)  # retrying a circuit just opened would defeat it

    def cancelled(self, call: Call, target: Target, seconds: float) -> None:
        assert call.route is not None
        if target in call.route.probes:
            call.route.probes.discard(target)
            self.breakers.released(target)


class RetryStage:
    def __init__(self, routing: RoutingConfig, metrics: Metrics, rng: random.Random | None = None,
                 observers: Sequence[AttemptObserver] | None = None) -> None:
        self.base = routing.backoff_base_ms / 1000
        self.cap = routing.backoff_max_ms / 1000
        self.retry_after_cap = routing.retry_after_cap_seconds
        self.metrics = metrics
        self.observers: tuple[AttemptObserver, ...] = tuple(observers) if observers is not None else (
            MetricsObserver(metrics),)
        self.random = (rng or random.Random()).random

    def backoff(self, retry_number: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.cap, self.base * (2**retry_number))
        return ceiling / 2 + self.random() * ceiling / 2

    async def __call__(self, call: Call, next: Next) -> Outcome:
        assert call.route is not None and call.target is not None
        policy = call.route.retry
        retries = policy.count if policy else 0
        codes = frozenset(policy.on_codes) if policy else frozenset()
        target = call.target
        observers = self.observers
        for number in range(retries + 1):
            for observer in observers:
                observer.started(call, target)
            started = time.perf_counter()
            try:
                result = await next(call)
            except asyncio.CancelledError:
                # The client left (or the deadline or a drain ended the request): the attempt in
                # flight is still part of what happened, and its wait was the provider's.
                seconds = time.perf_counter() - started
                call.upstream_seconds += seconds
                call.attempts.append(Attempt(target.label, 499, round(seconds * 1000, 2), "cancelled"))
                for observer in observers:
                    observer.cancelled(call, target, seconds)
                raise
            except UpstreamError as err:
                seconds = time.perf_counter() - started
                call.upstream_seconds += seconds
                call.attempts.append(Attempt(target.label, err.status, round(seconds * 1000, 2), err.kind))
                for observer in observers:
                    waiting = observer.finished(call, target, seconds, err)
                    if waiting is not None:
                        await waiting
                if number >= retries or err.status not in codes or target in call.route.tripped:
                    raise
                delay = self.backoff(number, err.retry_after)
                if time.perf_counter() + delay >= call.deadline:
                    raise
                self.metrics.retry(provider=target.provider, model=target.model)
                waited = time.perf_counter()
                try:
                    await asyncio.sleep(delay)
                finally:  # a deliberate wait, not the proxy's overhead
                    call.waited_seconds += time.perf_counter() - waited
                continue
            except Exception:
                # Not a provider's failure (a request the connector refused, a bug): the attempt
                # is over all the same, so what counts attempts in flight must hear of it.
                for observer in observers:
                    observer.cancelled(call, target, time.perf_counter() - started)
                raise
            seconds = time.perf_counter() - started
            call.upstream_seconds += seconds  # time waiting on the provider: not the proxy's overhead
            call.attempts.append(Attempt(target.label, 200, round(seconds * 1000, 2)))
            call.served = target
            for observer in observers:
                waiting = observer.finished(call, target, seconds, None)
                if waiting is not None:
                    await waiting
            return result
        raise AssertionError("unreachable: the last try returns or raises")
