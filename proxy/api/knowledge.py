"""The knowledge API's request bodies (orq's shapes, docs/…: README "Knowledge bases"), decoded
strictly: a malformed body is a 400 naming the JSON path of the bad field."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from proxy.api.filters import Filter, parse_filter
from proxy.api.request import Probability, SearchOptions, TopK
from proxy.core.errors import bad_request, validation_location

Key = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Text = Annotated[str, Meta(min_length=1, max_length=100_000)]
SearchType = Literal["vector_search", "keyword_search", "hybrid_search"]
MetadataIn = dict[str, str | float | bool]


class Body(msgspec.Struct, forbid_unknown_fields=False):
    """Unknown fields are ignored, as on the router (orq's SDKs add fields over time)."""


class KnowledgeRerankIn(Body):
    """A knowledge base's rerank setting: orq's field names differ from the search's."""

    rerank_model: Annotated[str, Meta(min_length=3)]
    top_k: TopK = 5
    rerank_threshold: Probability = 0.5


class AgenticIn(Body):
    model: Annotated[str, Meta(min_length=3)]  # `provider/model`


class RetrievalSettingsIn(Body):
    retrieval_type: SearchType | None = None
    top_k: TopK | None = None
    threshold: Probability | None = None
    # UNSET: leave as it is; null: turn off (orq: "setting null disables that feature").
    rerank_config: KnowledgeRerankIn | None | msgspec.UnsetType = msgspec.UNSET
    agentic_rag_config: AgenticIn | None | msgspec.UnsetType = msgspec.UNSET


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
    model: Annotated[str, Meta(min_length=3)]  # `provider/model` with a /rerank endpoint
    threshold: Probability = 0.0
    top_k: TopK = 10


class SearchRequest(Body):
    query: Annotated[str, Meta(min_length=1, max_length=10_000)]
    top_k: TopK | None = None
    threshold: Probability | None = None
    search_type: SearchType | None = None  # None: the knowledge base's retrieval_type
    filter_by: dict[str, Any] | None = None
    search_options: SearchOptions | None = None
    rerank_config: RerankIn | None = None
    agentic_rag_config: AgenticIn | None = None


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
