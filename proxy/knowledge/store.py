"""The storage interface every backend implements; the service holds the logic above it.

Knowledge bases and datasources are few, so they are read whole and filtered by the service;
chunks are paged and searched by the backend.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

import numpy as np

from proxy.knowledge.records import Chunk, Datasource, KnowledgeBase, Metadata, Page

# How many keyword hits a search reads before metadata filtering and top_k (README, "Scores").
KEYWORD_CANDIDATES = 1000

_WORD = re.compile(r"\w*[^\W_]\w*", re.UNICODE)  # a word with at least one letter or digit


def terms(query: str) -> list[str]:
    """A free-text query as search terms: words only, so no query syntax reaches the engine."""
    return list(dict.fromkeys(_WORD.findall(query.lower())))[:64]


class Candidates:
    """Every embedded chunk of a knowledge base: ids, metadata and one matrix of vectors."""

    def __init__(self, ids: list[str], metadata: list[Metadata], matrix: np.ndarray) -> None:
        self.ids = ids
        self.metadata = metadata
        self.matrix = matrix


class Store(ABC):
    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def put_base(self, kb: KnowledgeBase) -> None:
        """Insert or replace."""

    @abstractmethod
    async def bases(self) -> list[KnowledgeBase]: ...

    @abstractmethod
    async def delete_base(self, kb_id: str) -> None:
        """The base, its datasources and their chunks."""

    @abstractmethod
    async def put_datasource(self, ds: Datasource) -> None: ...

    @abstractmethod
    async def datasources(self, kb_id: str) -> list[Datasource]:
        """Oldest first, `chunks_count` filled in."""

    @abstractmethod
    async def delete_datasource(self, ds_id: str) -> None:
        """The datasource and its chunks."""

    @abstractmethod
    async def insert_chunks(self, chunks: list[Chunk]) -> None: ...

    @abstractmethod
    async def update_chunk(self, chunk: Chunk) -> None: ...

    @abstractmethod
    async def chunk(self, ds_id: str, chunk_id: str) -> Chunk | None: ...

    @abstractmethod
    async def chunks(self, ids: list[str]) -> dict[str, Chunk]: ...

    @abstractmethod
    async def list_chunks(self, ds_id: str, limit: int, after: str | None, before: str | None,
                          q: str | None, statuses: list[str] | None) -> Page: ...

    @abstractmethod
    async def delete_chunks(self, ds_id: str, ids: list[str]) -> list[str]:
        """The ids that existed and are gone."""

    @abstractmethod
    async def keyword(self, kb_id: str, query: str) -> list[tuple[str, float, Metadata]]:
        """Chunks matching any query term, best first: (id, raw score ≥ 0, metadata)."""

    @abstractmethod
    async def candidates(self, kb_id: str) -> Candidates: ...
