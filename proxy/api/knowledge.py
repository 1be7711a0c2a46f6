"""The knowledge API's request bodies (orq's shapes, docs/…: README "Knowledge bases"), decoded
strictly: a malformed body is a 400 naming the JSON path of the bad field."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from proxy.api.filters import Filter, parse_filter
from proxy.api.request import Probability, SearchOptions, TopK
from proxy.core.errors import ProxyError, bad_request, validation_location

Key = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Text = Annotated[str, Meta(min_length=1, max_length=100_000)]
SearchType = Literal["vector_search", "keyword_search", "hybrid_search"]
MetadataIn = dict[str, str | float | bool]


class Body(msgspec.Struct, forbid_unknown_fields=False):
    """Unknown fields are ignored, as on the router (orq's SDKs add fields over time)."""


class RetrievalSettingsIn(Body):
    retrieval_type: SearchType | None = None
    top_k: TopK | None = None
    threshold: Probability | None = None
    rerank_config: dict[str, Any] | None = None
    agentic_rag_config: dict[str, Any] | None = None


class CreateKnowledge(Body):
    key: Key
    embedding_model: str | None = None  # `provider/model`; without one, only keyword search
    path: str = "Default"
    description: str | None = None
    type: Literal["internal"] = "internal"  # external knowledge bases are not built
    retrieval_settings: RetrievalSettingsIn | None = None


class UpdateKnowledge(Body):
    description: str | None = None
    path: str | None = None
    retrieval_settings: RetrievalSettingsIn | None = None


class CreateDatasource(Body):
    display_name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None
    file_id: str | None = None  # refused: file ingestion is not built


class UpdateDatasource(Body):
    display_name: str | None = None
    description: str | None = None


class UpsertChunk(Body):
    text: Text
    embedding: Annotated[list[float], Meta(min_length=1, max_length=65_536)] | None = None
    metadata: MetadataIn | None = None


ChunkBatch = Annotated[list[UpsertChunk], Meta(min_length=1, max_length=100)]


class UpdateChunk(Body):
    text: Text | None = None
    embedding: Annotated[list[float], Meta(min_length=1, max_length=65_536)] | None = None
    metadata: MetadataIn | None = None


class DeleteChunks(Body):
    chunk_ids: Annotated[list[str], Meta(min_length=1, max_length=100)]


class RerankIn(Body):
    model: str


class SearchRequest(Body):
    query: Annotated[str, Meta(min_length=1, max_length=10_000)]
    top_k: TopK | None = None
    threshold: Probability | None = None
    search_type: SearchType | None = None  # None: the knowledge base's retrieval_type
    filter_by: dict[str, Any] | None = None
    search_options: SearchOptions | None = None
    rerank_config: RerankIn | None = None
    agentic_rag_config: dict[str, Any] | None = None


T = TypeVar("T")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body or b"null", type=kind)
    except msgspec.ValidationError as err:
        path, what = validation_location(err)
        missing = _MISSING.match(what)
        if missing:
            param = f"{path}.{missing['field']}" if path else missing["field"]
            raise bad_request(f"Missing required field `{param}`", param) from None
        raise bad_request(f"Invalid value for `{path or '(body)'}`: {what}", path or None) from None
    except msgspec.DecodeError as err:
        raise bad_request(f"Request body is not valid JSON: {err}") from None


def search_filter(raw: dict[str, Any] | None, path: str) -> Filter | None:
    return None if raw is None else parse_filter(raw, path)


def refuse_unbuilt(rerank: object, agentic: object, path: str) -> None:
    """Rerank and agentic rewriting are not built: asking for them is a 400, never silently ignored."""
    for value, name in ((rerank, "rerank_config"), (agentic, "agentic_rag_config")):
        if value is not None:
            raise ProxyError(400, f"`{path}{name}` is not supported by this proxy yet", param=f"{path}{name}",
                             code="unsupported_parameter")
