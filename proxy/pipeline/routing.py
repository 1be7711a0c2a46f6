"""Routing fields of a request, resolved once: top-level over the deprecated `orq` block,
model names turned into targets (aliases applied, provider checked)."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.api.request import Cache, LoadBalancer, Retry, RoutedRequest
from proxy.config import Config
from proxy.core.errors import ErrorCode, ProxyError
from proxy.core.target import Target
from proxy.pipeline.fallback import DEFAULT_FALLBACK_CODES


@dataclass(slots=True)
class Route:
    model: Target | None
    fallbacks: list[Target]
    weighted: list[tuple[Target, float]] | None
    retry: Retry | None
    call_timeout_seconds: float | None
    cache: Cache | None
    fallback_codes: frozenset[int] = DEFAULT_FALLBACK_CODES  # statuses that move on to the next candidate
    candidates: list[Target] = field(default_factory=list)  # what the balancer decided, in order
    named: list[tuple[Target, str]] = field(default_factory=list)  # every model it may reach, with its param


class TargetResolver:
    """`provider/model` or an alias → Target; unknown providers are a 400 naming the field."""

    def __init__(self, config: Config) -> None:
        self.providers = frozenset(config.providers)
        self.aliases = config.aliases
        self._cache: dict[str, Target] = {}

    def __call__(self, name: str, param: str) -> Target:
        target = self._cache.get(name)
        if target is not None:
            return target
        resolved = self.aliases.get(name, name)
        provider, sep, model = resolved.partition("/")
        if not sep or not model or provider not in self.providers:
            known = ", ".join(sorted(self.providers))
            raise ProxyError(
                400,
                f"`{param}` must be `provider/model` with a configured provider ({known}) or an alias; got {name!r}",
                param=param,
                code=ErrorCode.model_not_found,
            )
        target = Target(provider, model)
        if len(self._cache) < 4096:  # bounded: model names come from clients
            self._cache[name] = target
        return target


def resolve_route(request: RoutedRequest, resolve: TargetResolver) -> Route:
    orq = request.orq
    if orq is None and request.load_balancer is None and not request.fallbacks and request.model:
        # The common request: one model, maybe retry/timeout/cache, nothing to merge.
        only = resolve(request.model, "model")
        timeout = request.timeout
        return Route(model=only, fallbacks=[], weighted=None, retry=request.retry,
                     call_timeout_seconds=timeout.call_timeout / 1000 if timeout else None,
                     cache=request.cache, fallback_codes=_codes(request), named=[(only, "model")])
    fallbacks = request.fallbacks if request.fallbacks is not None else (orq.fallbacks if orq else None)
    fallbacks_param = "fallbacks" if request.fallbacks is not None else "orq.fallbacks"
    balancer: LoadBalancer | None = request.load_balancer or (orq.load_balancer if orq else None)
    balancer_param = "load_balancer" if request.load_balancer is not None else "orq.load_balancer"
    timeout = request.timeout or (orq.timeout if orq else None)
    named: list[tuple[Target, str]] = []

    def target(name: str, param: str) -> Target:
        resolved = resolve(name, param)
        named.append((resolved, param))
        return resolved

    weighted = None
    model: Target | None = None
    if balancer is not None:  # `model` is ignored when a load balancer is given (DESIGN.md)
        weighted = [(target(m.model, f"{balancer_param}.models[{i}].model"), m.weight)
                    for i, m in enumerate(balancer.models)]
    elif request.model:
        model = target(request.model, "model")
    return Route(
        model=model,
        fallbacks=[target(f.model, f"{fallbacks_param}[{i}].model") for i, f in enumerate(fallbacks or [])],
        weighted=weighted,
        retry=request.retry or (orq.retry if orq else None),
        call_timeout_seconds=timeout.call_timeout / 1000 if timeout else None,
        cache=request.cache or (orq.cache if orq else None),
        fallback_codes=_codes(request),
        named=named,
    )


def _codes(request: RoutedRequest) -> frozenset[int]:
    codes = request.fallback_on_codes
    return DEFAULT_FALLBACK_CODES if codes is None else frozenset(codes)
