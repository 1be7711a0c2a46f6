"""Routing fields of a request, resolved once: top-level over the deprecated `orq` block,
model names turned into targets (aliases applied, provider checked), model groups expanded
into pools and their defaults merged (README, "Routing policy")."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.api.request import Cache, LoadBalancer, Retry, RoutedRequest
from proxy.config import Config, GroupConfig, Strategy
from proxy.config_checks import MAX_POOLS
from proxy.core.errors import ErrorCode, ProxyError
from proxy.core.target import Target
from proxy.health.circuit import View
from proxy.pipeline.fallback import DEFAULT_FALLBACK_CODES


@dataclass(frozen=True, slots=True)
class Pool:
    """One step of the route: a model, or a group's members, of which the balancer draws one."""

    members: tuple[tuple[Target, float], ...]
    strategy: Strategy = "weighted"
    group: str | None = None


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
    pools: list[Pool] = field(default_factory=list)  # the first, then one per fallback (groups expanded)
    group: str | None = None  # the group `model` named, if any
    health: dict[Target, View] = field(default_factory=dict)  # circuit views, when breakers are on
    probes: set[Target] = field(default_factory=set)  # candidates let through as half-open probes
    tripped: set[Target] = field(default_factory=set)  # circuits this request's attempts opened: no retry


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    chain: tuple[Pool, ...]  # its own pool, then its fallbacks (other groups' chains expanded)
    retry: Retry | None
    call_timeout_seconds: float | None
    cache: Cache | None
    fallback_codes: frozenset[int] | None


class TargetResolver:
    """`provider/model` or an alias → Target; unknown providers are a 400 naming the field."""

    def __init__(self, config: Config) -> None:
        self.providers = frozenset(config.providers)
        self.aliases = config.aliases
        self._cache: dict[str, Target] = {}
        self.groups: dict[str, Group] = {}
        for name in config.groups:
            self.groups[name] = self._group(name, config.groups)

    def __call__(self, name: str, param: str) -> Target:
        target = self._cache.get(name)
        if target is not None:
            return target
        if name in self.groups:
            raise ProxyError(400, f"`{param}` names the group {name!r}: a group may be a request's `model` "
                                  "or a fallback, not a load-balancer member",
                             param=param, code=ErrorCode.model_not_found)
        resolved = self.aliases.get(name, name)
        provider, sep, model = resolved.partition("/")
        if not sep or not model or provider not in self.providers:
            known = ", ".join(sorted(self.providers))
            raise ProxyError(
                400,
                f"`{param}` must be `provider/model` with a configured provider ({known}), an alias "
                f"or a group; got {name!r}",
                param=param,
                code=ErrorCode.model_not_found,
            )
        target = Target(provider, model)
        if len(self._cache) < 4096:  # bounded: model names come from clients
            self._cache[name] = target
        return target

    def pools(self, name: str, param: str) -> tuple[Pool, ...]:
        """What a fallback name expands to: a group's chain, or one model."""
        group = self.groups.get(name)
        if group is not None:
            return group.chain
        return (Pool(((self(name, param), 1.0),)),)

    def _group(self, name: str, groups: dict[str, GroupConfig]) -> Group:
        spec = groups[name]
        chain = _chain(name, groups, self, set())[:MAX_POOLS]  # the config check bounds it already
        return Group(
            name=name,
            chain=tuple(chain),
            retry=Retry(count=spec.retry.count, on_codes=list(spec.retry.on_codes)) if spec.retry else None,
            call_timeout_seconds=spec.timeout.call_timeout / 1000 if spec.timeout else None,
            cache=Cache(type=spec.cache.type, ttl=spec.cache.ttl) if spec.cache else None,
            fallback_codes=frozenset(spec.fallback_on_codes) if spec.fallback_on_codes is not None else None,
        )


def _chain(name: str, groups: dict[str, GroupConfig], resolve: TargetResolver, seen: set[str]) -> list[Pool]:
    """A group's pool, then its fallbacks in order, a fallback group bringing its own chain; a
    group already on the chain is not entered twice (no cycle, no repeat)."""
    spec = groups[name]
    seen.add(name)
    members = tuple((resolve(t.model, f"groups.{name}.targets"), t.weight) for t in spec.targets)
    chain = [Pool(members, spec.strategy, name)]
    for fallback in spec.fallbacks:
        if fallback in groups:
            if fallback not in seen:
                chain.extend(_chain(fallback, groups, resolve, seen))
        else:
            chain.append(Pool(((resolve(fallback, f"groups.{name}.fallbacks"), 1.0),)))
        if len(chain) > MAX_POOLS:
            break
    return chain


def resolve_route(request: RoutedRequest, resolve: TargetResolver) -> Route:
    orq = request.orq
    group = resolve.groups.get(request.model) if request.model and resolve.groups else None
    if group is None and orq is None and request.load_balancer is None and not request.fallbacks and request.model:
        # The common request: one model, maybe retry/timeout/cache, nothing to merge.
        only = resolve(request.model, "model")
        timeout = request.timeout
        return Route(model=only, fallbacks=[], weighted=None, retry=request.retry,
                     call_timeout_seconds=timeout.call_timeout / 1000 if timeout else None,
                     cache=request.cache, fallback_codes=_codes(request, None), named=[(only, "model")],
                     pools=[Pool(((only, 1.0),))])
    fallbacks = request.fallbacks if request.fallbacks is not None else (orq.fallbacks if orq else None)
    fallbacks_param = "fallbacks" if request.fallbacks is not None else "orq.fallbacks"
    balancer: LoadBalancer | None = request.load_balancer or (orq.load_balancer if orq else None)
    balancer_param = "load_balancer" if request.load_balancer is not None else "orq.load_balancer"
    if balancer is not None:
        group = None  # `model` is ignored when a load balancer is given (DESIGN.md), its group too
    named: list[tuple[Target, str]] = []
    pools: list[Pool] = []

    def add(pool: Pool, param: str) -> None:
        pools.append(pool)
        named.extend((target, param) for target, _ in pool.members)

    if balancer is not None:
        params = [f"{balancer_param}.models[{i}].model" for i in range(len(balancer.models))]
        members = tuple((resolve(m.model, param), m.weight) for m, param in zip(balancer.models, params, strict=True))
        pools.append(Pool(members))
        named.extend((target, param) for (target, _), param in zip(members, params, strict=True))
    elif group is not None:
        # The group's own fallbacks only when the request names none (README, "Routing policy").
        for pool in group.chain if fallbacks is None else group.chain[:1]:
            add(pool, "model")
    elif request.model:
        add(Pool(((resolve(request.model, "model"), 1.0),)), "model")
    for i, fallback in enumerate(fallbacks or []):
        param = f"{fallbacks_param}[{i}].model"
        for pool in resolve.pools(fallback.model, param):
            add(pool, param)
    if len(pools) > MAX_POOLS:
        raise ProxyError(400, f"the route reaches {len(pools)} models or groups in turn, more than "
                              f"{MAX_POOLS} (fallback groups count with their own fallbacks)",
                         param=fallbacks_param if fallbacks else "model", code=ErrorCode.invalid_request_body)
    first = pools[0] if pools else None
    single = first is not None and balancer is None and len(first.members) == 1
    timeout = request.timeout or (orq.timeout if orq else None)
    retry = request.retry or (orq.retry if orq else None)
    cache = request.cache or (orq.cache if orq else None)
    return Route(
        model=first.members[0][0] if single and first else None,
        fallbacks=[target for pool in pools[1:] for target, _ in pool.members],
        weighted=list(first.members) if first and not single else None,
        retry=retry if retry is not None or group is None else group.retry,
        call_timeout_seconds=(timeout.call_timeout / 1000 if timeout
                              else group.call_timeout_seconds if group else None),
        cache=cache if cache is not None or group is None else group.cache,
        fallback_codes=_codes(request, group),
        named=named,
        pools=pools,
        group=group.name if group else None,
    )


def _codes(request: RoutedRequest, group: Group | None) -> frozenset[int]:
    codes = request.fallback_on_codes
    if codes is not None:
        return frozenset(codes)
    if group is not None and group.fallback_codes is not None:
        return group.fallback_codes
    return DEFAULT_FALLBACK_CODES
