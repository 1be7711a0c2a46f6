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

from proxy.config_checks import (
    DROP,
    Problem,
    join,
    semantic_errors,
    structural_errors,
)
from proxy.core.errors import validation_location
from proxy.knowledge import local_embedder

PortNumber = Annotated[int, Meta(ge=1, le=65535)]
Positive = Annotated[float, Meta(gt=0)]


class ConfigError(Exception):
    """One or more problems, each a line naming the file and the key path."""

    def __init__(self, *errors: str) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


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
    # Slow clients (README, "Connections"): a request head must arrive within header_timeout once
    # it starts; an idle keep-alive connection closes after idle_timeout (above nginx's 60 s
    # upstream keepalive_timeout, so nginx never reuses a connection we are closing); a body
    # must arrive within body_timeout.
    header_timeout_seconds: Positive = 10.0
    idle_timeout_seconds: Positive = 75.0
    body_timeout_seconds: Positive = 30.0
    # Open client connections per worker; past it a new one gets 503 and is closed. None: half
    # the process's open-file limit, leaving the rest for upstream connections.
    max_connections: Annotated[int, Meta(ge=1)] | None = None
    # A prompt after templating (`{{var}}` filled from orq.inputs), computed before rendering.
    max_prompt_chars: Annotated[int, Meta(ge=1024)] = 4_194_304


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
class RetrievalSettings(Strict):
    """A knowledge base's defaults for searches that do not say (orq's `retrieval_settings`)."""

    retrieval_type: Literal["vector_search", "keyword_search", "hybrid_search"] = "hybrid_search"
    top_k: Annotated[int, Meta(ge=1, le=100)] = 5
    threshold: Annotated[float, Meta(ge=0, le=1)] = 0.0


class DeclaredKnowledgeBase(Strict):
    """A knowledge base the config declares: created at start if missing, never dropped."""

    key: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
    embedding_model: str | None = None  # `provider/model` (an OpenAI-compatible /embeddings)
    description: str | None = None
    retrieval_settings: RetrievalSettings = msgspec.field(default_factory=RetrievalSettings)
    keys: list[str] | None = None  # names of the API keys that may use it; None: every key


class KnowledgeConfig(Strict):
    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: str = "switchyard-knowledge.db"  # sqlite: relative to the config file
    url: str | None = None  # postgres: postgresql://user@host:port/database
    schema: Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "switchyard_knowledge"  # postgres
    embedding_batch: Annotated[int, Meta(ge=1, le=2048)] = 64  # texts per /embeddings call
    embedding_timeout_seconds: Positive = 30.0
    # How retrieved chunks enter the prompt: `{context}` is the chunks joined by a blank line.
    template: str = "Use the following context to answer.\n<context>\n{context}\n</context>"
    bases: list[DeclaredKnowledgeBase] = msgspec.field(default_factory=list)


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
    knowledge: KnowledgeConfig | None = None  # absent: no knowledge bases (the API answers 404)
    source: str = ""  # the file it came from, filled in by load_config


# -- ${ENV} interpolation ------------------------------------------------------------------------------
_ENV = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _interpolate(node: Any, path: str, env: dict[str, str], problems: list[Problem]) -> Any:
    """Values with `${VAR}` filled in; an unset variable is a problem and leaves the text as it was."""
    if isinstance(node, dict):
        return {k: _interpolate(v, join(path, str(k)), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, join(path, i), env, problems) for i, v in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match["name"], match["default"]
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set"))
            return match[0]

        return _ENV.sub(replace, node)
    return node


# -- loading -------------------------------------------------------------------------------------------
def parse_config(text: str, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    """The config, or a ConfigError listing every problem found (not only the first)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with at least `providers`")
    unset: list[Problem] = []
    raw = _interpolate(raw, "", dict(os.environ) if env is None else env, unset)
    structural: list[Problem] = []
    repaired = structural_errors(raw, Config, "", structural)
    # A value whose variable is unset is reported once, as that, not again as a bad value.
    structural = [p for p in structural if not any(_related(p[0], u[0]) for u in unset)]
    problems = unset + structural
    config: Config | None = None
    if repaired is not DROP and not (isinstance(repaired, dict) and "providers" not in repaired):
        try:
            config = msgspec.convert(repaired, Config, strict=False)
        except msgspec.ValidationError as err:  # the walker missed something: report msgspec's own words
            path, what = validation_location(err)
            problems.append((path, what))
    if config is not None:
        # Checks of a value already reported as bad would only repeat it.
        reported = [p[0] for p in problems]
        problems += [p for p in semantic_errors(config, Path(source).parent, LOCAL_DEFAULTS)
                     if not any(_related(p[0], r) for r in reported)]
        problems += knowledge_problems(config)
    if problems:
        raise ConfigError(*(f"{source}: {path or '(top level)'}: {what}" for path, what in problems))
    assert config is not None
    config.source = source
    if config.prompts.dir is not None and not Path(config.prompts.dir).is_absolute():
        config.prompts.dir = str((Path(source).parent / config.prompts.dir).resolve())
    knowledge = config.knowledge
    if knowledge is not None and knowledge.backend == "sqlite" and knowledge.path != ":memory:" \
            and not Path(knowledge.path).is_absolute():
        knowledge.path = str((Path(source).parent / knowledge.path).resolve())
    return config


def _related(path: str, other: str) -> bool:
    """One key path is the other or lies inside it (`auth.keys[0]` and `auth.keys[0].key`)."""
    return path == other or path.startswith((other + ".", other + "[")) or other.startswith((path + ".", path + "["))


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    return parse_config(text, str(path))


def knowledge_problems(config: Config) -> list[Problem]:
    """The `knowledge:` section's checks the types cannot say (README, "Knowledge bases")."""
    knowledge = config.knowledge
    if knowledge is None:
        return []
    problems: list[Problem] = []
    if knowledge.backend == "postgres":
        if not knowledge.url:
            problems.append(("knowledge.url",
                             "the postgres backend needs a url such as postgresql://127.0.0.1:5432/switchyard"))
        if importlib.util.find_spec("asyncpg") is None:
            problems.append(("knowledge.backend",
                             "postgres needs asyncpg, which is not installed: pip install 'switchyard[postgres]'"))
    if "{context}" not in knowledge.template:
        problems.append(("knowledge.template", "must contain `{context}`, where the retrieved chunks go"))
    names = {key.name for key in config.auth.keys}
    seen: set[str] = set()
    for i, base in enumerate(knowledge.bases):
        if base.key in seen:
            problems.append((f"knowledge.bases[{i}].key", f"duplicate knowledge base {base.key!r}"))
        seen.add(base.key)
        model = base.embedding_model
        if model == local_embedder.MODEL:
            if (problem := local_embedder.missing()) is not None:
                problems.append((f"knowledge.bases[{i}].embedding_model", problem))
        elif model is not None and ("/" not in model or model.partition("/")[0] not in config.providers):
            problems.append((f"knowledge.bases[{i}].embedding_model",
                             f"{model!r} must be `provider/model` with a configured provider"))
        for j, name in enumerate(base.keys or ()):
            if name not in names:
                problems.append((f"knowledge.bases[{i}].keys[{j}]", f"no API key named {name!r} in auth.keys"))
    return problems


DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "switchyard.yaml"
