"""The per-request state every stage reads and writes. Connectors never see it: they get the
canonical request, a target and a CallContext (docs/architecture.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxy.api.request import RoutedRequest
from proxy.core.model import ChatRequest, Usage
from proxy.core.target import Target

if TYPE_CHECKING:
    from proxy.api.surface import Surface
    from proxy.pipeline.auth import ApiKey
    from proxy.pipeline.routing import Route


@dataclass(slots=True)
class Attempt:
    model: str
    status: int
    ms: float
    error: str | None = None


@dataclass(slots=True)
class Call:
    request_id: str
    request: RoutedRequest  # as the surface decoded it: routing fields and the `orq` block
    chat: ChatRequest  # the canonical request: templating and knowledge edit it, connectors get it
    surface: Surface
    key: ApiKey | None = None
    route: Route | None = None  # routing fields resolved (top-level over `orq`), set by the handler
    target: Target | None = None  # the candidate being tried now
    served: Target | None = None  # the candidate whose answer the client gets
    attempts: list[Attempt] = field(default_factory=list)
    cache_status: str | None = None
    upstream_seconds: float = 0.0  # time spent waiting on providers
    waited_seconds: float = 0.0  # deliberate waits: retry backoff, a client reading slowly
    started: float = field(default_factory=time.perf_counter)
    deadline: float = 0.0  # perf_counter value after which the whole request is over
    first_token_seconds: float | None = None
    # A stream's overhead is fixed when its first content is written: relaying the rest is paced
    # by the provider and the client, and must not make a long stream look slow (README, "Metrics").
    stream_overhead: float | None = None
    usage: Usage | None = None
    log: dict[str, Any] = field(default_factory=dict)  # extra fields for the request's log event

    @property
    def stream(self) -> bool:
        return self.chat.stream

    @property
    def route_name(self) -> str:
        return self.surface.name

    def overhead_seconds(self) -> float:
        """The proxy's own time: total minus providers and deliberate waits (README, "Metrics")."""
        if self.stream_overhead is not None:
            return self.stream_overhead
        return max(0.0, time.perf_counter() - self.started - self.upstream_seconds - self.waited_seconds)
