"""Turns one finished request (its Call) into the metric updates it implies."""

from __future__ import annotations

import time

from proxy.observability.metrics import Metrics
from proxy.pipeline.call import Call


class RequestMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def request_started(self, stream: bool) -> None:
        self.metrics.request_started(stream=stream)

    def request_done(self, call: Call | None, status: int, counted: bool, route: str = "completions") -> None:
        """`counted`: request_started ran (the body was decoded); gauges must come back to zero."""
        metrics = self.metrics
        if not counted:  # refused before decoding (auth, body): counted as a request, never in flight
            metrics.request_started(stream=False)
        stream = call.request.stream if call is not None and counted else False
        if call is None:
            metrics.request_finished(route=route, provider="none", model="none", status=status,
                                     cache="none", stream=stream, duration_s=0.0, overhead_s=0.0)
            return
        duration = time.perf_counter() - call.started
        target = call.served or call.target
        provider, model = (target.provider, target.model) if target else ("none", "none")
        metrics.request_finished(
            route=call.route_name, provider=provider, model=model, status=status,
            cache=call.cache_status or "none", stream=stream, duration_s=duration,
            overhead_s=call.overhead_seconds(),
        )
        if call.first_token_seconds is not None and target is not None:
            metrics.first_token(provider=provider, model=model, seconds=call.first_token_seconds)
        if call.usage is not None and target is not None and call.cache_status != "hit":
            metrics.tokens(provider=provider, model=model, prompt=call.usage.prompt_tokens,
                           completion=call.usage.completion_tokens)

    def render(self) -> tuple[bytes, str]:
        return self.metrics.render()
