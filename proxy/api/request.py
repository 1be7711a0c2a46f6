"""The whole request schema of `POST /v2/router/completions` as msgspec structs.

Every field of the spec is here, including the ones a later stage implements, so a bad value is
rejected with the field's path before any routing happens. Ranges come from the spec's schema
and, where the schema only states them in prose (temperature, top_p, stop), from that prose.
Integral floats are accepted where integers are meant (proxy.api.decode), because the
orq SDK sends `retry.count: 3.0`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# -- scalar constraints ---------------------------------------------------------------------------
Penalty = Annotated[float, Meta(ge=-2, le=2)]
Temperature = Annotated[float, Meta(ge=0, le=2)]
Probability = Annotated[float, Meta(ge=0, le=1)]
ChoiceCount = Annotated[int, Meta(ge=1, le=128)]
StatusCode = Annotated[int, Meta(ge=100, le=599)]
RetryCount = Annotated[int, Meta(ge=1, le=5)]
CacheTtl = Annotated[float, Meta(ge=1, le=259200)]
Weight = Annotated[float, Meta(ge=0.001, le=1)]
TimeoutMs = Annotated[float, Meta(ge=1)]
TopK = Annotated[int, Meta(ge=1, le=100)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
StopSequences = Annotated[list[str], Meta(max_length=4)]
# Integers reach upstreams and the cache key (msgpack): keep them in a signed 64-bit range.
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
MaxTokens = Annotated[int, Meta(ge=0, le=2**63 - 1)]
# A model name becomes an upstream field, a response header and a log field: printable, bounded.
ModelName = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+\Z")]
# Each fallback and balanced model may become an upstream call: bounded (README, "Routing").
MAX_FALLBACKS = 16
MAX_BALANCED_MODELS = 32


class Base(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """Unknown fields are ignored (DESIGN.md); None/default fields are left out when encoded."""


# -- routing ----------------------------------------------------------------------------------------
class Fallback(Base):
    model: ModelName


Fallbacks = Annotated[list[Fallback], Meta(max_length=MAX_FALLBACKS)]


class Retry(Base):
    count: RetryCount = 3
    on_codes: Annotated[list[StatusCode], Meta(min_length=1)] = msgspec.field(default_factory=lambda: [429])


class Cache(Base):
    type: Literal["exact_match"]
    ttl: CacheTtl = 1800


class WeightedModel(Base):
    model: ModelName
    weight: Weight = 0.5


class LoadBalancer(Base):
    type: Literal["weight_based"]
    models: Annotated[list[WeightedModel], Meta(min_length=1, max_length=MAX_BALANCED_MODELS)]


class Timeout(Base):
    call_timeout: TimeoutMs


# -- thinking (a tagged union on `type`) --------------------------------------------------------------
class ThinkingDisabled(Base, tag_field="type", tag="disabled"):
    pass


class ThinkingEnabled(Base, tag_field="type", tag="enabled"):
    budget_tokens: Annotated[int, Meta(ge=1024, le=2**63 - 1)]
    thinking_level: Literal["low", "medium", "high"] | None = None


class ThinkingAdaptive(Base, tag_field="type", tag="adaptive"):
    pass


Thinking = ThinkingDisabled | ThinkingEnabled | ThinkingAdaptive


# -- the deprecated `orq` block -----------------------------------------------------------------------
class Identity(Base):
    id: NonEmptyStr
    display_name: str | None = None
    email: Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    metadata: list[dict[str, Any]] | None = None
    logo_url: str | None = None
    tags: list[str] | None = None


class Thread(Base):
    id: NonEmptyStr
    tags: list[str] | None = None


class PromptRef(Base):
    id: NonEmptyStr
    version: Literal["latest"]


class InputItem(Base):
    key: NonEmptyStr
    value: Any = None
    is_pii: bool = False


class SearchOptions(Base):
    include_vectors: bool | None = None
    include_metadata: bool | None = None
    include_scores: bool | None = None


class RerankConfig(Base):
    model: NonEmptyStr
    threshold: Probability = 0
    top_k: TopK = 10


class AgenticRagConfig(Base):
    model: NonEmptyStr


class KnowledgeBaseQuery(Base):
    knowledge_id: NonEmptyStr
    top_k: TopK | None = None
    threshold: Probability | None = None
    search_type: Literal["vector_search", "keyword_search", "hybrid_search"] = "hybrid_search"
    # Validated into a typed tree by proxy.api.filters (msgspec cannot union two object shapes).
    filter_by: dict[str, Any] | None = None
    search_options: SearchOptions | None = None
    rerank_config: RerankConfig | None = None
    agentic_rag_config: AgenticRagConfig | None = None
    query: str | None = None


class Orq(Base):
    name: str | None = None
    retry: Retry | None = None
    fallbacks: Fallbacks | None = None
    prompt: PromptRef | None = None
    identity: Identity | None = None
    contact: Identity | None = None  # deprecated alias of identity, same schema
    thread: Thread | None = None
    inputs: dict[str, Any] | list[InputItem] | None = None
    cache: Cache | None = None
    knowledge_bases: list[KnowledgeBaseQuery] | None = None
    load_balancer: LoadBalancer | None = None
    timeout: Timeout | None = None


# -- the request ---------------------------------------------------------------------------------------
class RoutedRequest(Base):
    """What every surface's request has: the model, the routing fields, and the `orq` block."""

    # `model` is required by the spec; it is checked after decoding so the error can say so in
    # the same shape as every other error, and because a load balancer stands in for it.
    model: ModelName | None = None
    user: str | None = None
    name: str | None = None
    fallbacks: Fallbacks | None = None
    retry: Retry | None = None
    cache: Cache | None = None
    load_balancer: LoadBalancer | None = None
    timeout: Timeout | None = None
    thinking: Thinking | None = None
    fallback_on_codes: Annotated[list[StatusCode], Meta(min_length=1)] | None = None
    plugins: list[Any] | None = None  # the orq SDK's; refused unless empty until we build them
    orq: Orq | None = None
    stream: bool = False


class SamplingRequest(RoutedRequest):
    """The sampling parameters both surfaces share."""

    frequency_penalty: Penalty | None = None
    max_tokens: MaxTokens | None = None
    presence_penalty: Penalty | None = None
    seed: Int64 | None = None
    stop: str | StopSequences | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: ChoiceCount | None = None


class StreamOptions(Base):
    include_usage: bool | None = None


class CompletionRequest(SamplingRequest, forbid_unknown_fields=True):
    """Unknown top-level fields fail the fast decode; proxy.api.decode then sets them aside as
    `extras`, which are passed through to OpenAI-compatible upstreams (README, "Parameters")."""

    # Required by the spec, but a stored prompt (`orq.prompt`) can stand in for it: checked later.
    prompt: str | list[str] | None = None
    echo: bool | None = None
    # Not in orq's schema but sent by OpenAI's SDKs: accepted for every provider, and needless,
    # since a streamed completion always ends with its usage (README, "Streaming").
    stream_options: StreamOptions | None = None


# A completion's generation parameters: what it forwards and what a stored prompt may default.
GENERATION_FIELDS: tuple[str, ...] = (
    "echo", "frequency_penalty", "max_tokens", "presence_penalty", "seed", "stop", "temperature", "top_p", "n",
)
_FIELD_INFO = {field.name: field for field in msgspec.structs.fields(CompletionRequest)}
GenerationParams = msgspec.defstruct(
    "GenerationParams",
    [(name, _FIELD_INFO[name].type, None) for name in GENERATION_FIELDS],
    bases=(Base,),
    forbid_unknown_fields=True,
)


# The generation parameters forwarded to providers and hashed into the cache key, with the spec's
# defaults (a client that omits a field and one that sends the default ask for the same thing).
GENERATION_DEFAULTS: dict[str, Any] = {
    # Floats where the field is a float: a client's `temperature: 1` decodes to 1.0, and the
    # cache key must not tell it apart from an omitted temperature.
    "echo": False,
    "frequency_penalty": 0.0,
    "max_tokens": 16,
    "presence_penalty": 0.0,
    "seed": None,
    "stop": None,
    "temperature": 1.0,
    "top_p": 1.0,
    "n": 1,
}
