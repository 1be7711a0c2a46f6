"""Stage: retry one candidate while its failure's status is in `retry.on_codes`.

Backoff is exponential with equal jitter; a provider's `Retry-After` wins, capped so a hostile
or confused upstream cannot park a request. No retry is started that would end past the
request's deadline.
"""

from __future__ import annotations

import asyncio
import random
import time

from proxy.config import RoutingConfig
from proxy.core.errors import UpstreamError
from proxy.observability.metrics import Metrics
from proxy.pipeline.call import Attempt, Call
from proxy.pipeline.stage import Next, Outcome

_STATUS_LABEL = {"timeout": "timeout", "connection": "connection_error", "protocol": "protocol_error"}


def outcome_label(err: UpstreamError) -> str:
    return _STATUS_LABEL.get(err.kind, str(err.status))


class RetryStage:
    def __init__(self, routing: RoutingConfig, metrics: Metrics, rng: random.Random | None = None) -> None:
        self.base = routing.backoff_base_ms / 1000
        self.cap = routing.backoff_max_ms / 1000
        self.retry_after_cap = routing.retry_after_cap_seconds
        self.metrics = metrics
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
        metrics = self.metrics
        for number in range(retries + 1):
            started = time.perf_counter()
            try:
                result = await next(call)
            except asyncio.CancelledError:
                # The client left (or the deadline or a drain ended the request): the attempt in
                # flight is still part of what happened, and its wait was the provider's.
                seconds = time.perf_counter() - started
                call.upstream_seconds += seconds
                call.attempts.append(Attempt(target.label, 499, round(seconds * 1000, 2), "cancelled"))
                raise
            except UpstreamError as err:
                seconds = time.perf_counter() - started
                call.upstream_seconds += seconds
                call.attempts.append(Attempt(target.label, err.status, round(seconds * 1000, 2), err.kind))
                metrics.upstream_finished(provider=target.provider, model=target.model,
                                          status=outcome_label(err), duration_s=seconds)
                if number >= retries or err.status not in codes:
                    raise
                delay = self.backoff(number, err.retry_after)
                if time.perf_counter() + delay >= call.deadline:
                    raise
                metrics.retry(provider=target.provider, model=target.model)
                waited = time.perf_counter()
                try:
                    await asyncio.sleep(delay)
                finally:  # a deliberate wait, not the proxy's overhead
                    call.waited_seconds += time.perf_counter() - waited
                continue
            seconds = time.perf_counter() - started
            call.upstream_seconds += seconds  # time waiting on the provider: not the proxy's overhead
            call.attempts.append(Attempt(target.label, 200, round(seconds * 1000, 2)))
            call.served = target
            metrics.upstream_finished(provider=target.provider, model=target.model, status="200",
                                      duration_s=seconds)
            return result
        raise AssertionError("unreachable: the last try returns or raises")
