"""The per-request state every stage reads and writes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from proxy.api.request import CompletionRequest

if TYPE_CHECKING:
    from proxy.api.response import Usage
    from proxy.pipeline.auth import ApiKey
    from proxy.pipeline.routing import Route


class Target(NamedTuple):
    """One candidate model: `provider/model` split, as the connectors need it."""

    provider: str
    model: str  # the upstream model id (may contain '/')

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(slots=True)
class Attempt:
    model: str
    status: int
    ms: float
    error: str | None = None


@dataclass(slots=True)
class Call:
    request_id: str
    request: CompletionRequest
    route_name: str = "completions"
    key: ApiKey | None = None
    route: Route | None = None  # routing fields resolved (top-level over `orq`), set by the handler
    prompt: str | list[str] = ""  # the final prompt, after templating
    params: dict[str, Any] = field(default_factory=dict)  # generation parameters as sent upstream
    target: Target | None = None  # the candidate being tried now
    served: Target | None = None  # the candidate whose answer the client gets
    attempts: list[Attempt] = field(default_factory=list)
    cache_status: str | None = None
    upstream_seconds: float = 0.0  # time spent waiting on providers (overhead = total - this)
    started: float = field(default_factory=time.perf_counter)
    deadline: float = 0.0  # perf_counter value after which the whole request is over
    first_token_seconds: float | None = None
    usage: Usage | None = None
    log: dict[str, Any] = field(default_factory=dict)  # extra fields for the request's log event

    @property
    def stream(self) -> bool:
        return self.request.stream
