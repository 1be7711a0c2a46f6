"""The storage interface every backend implements; the service holds the logic above it.

Knowledge bases and datasources are few, so they are read whole and filtered by the service;
chunks are paged and searched by the backend.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: numpy costs every worker ~16 MB, knowledge bases or not
    import numpy as np

from proxy.knowledge.records import Chunk, Datasource, KnowledgeBase, Metadata, Page

# How many keyword hits a search reads before metadata filtering and top_k (README, "Scores").
KEYWORD_CANDIDATES = 1000

_WORD = re.compile(r"\w*[^\W_]\w*", re.UNICODE)  # a word with at least one letter or digit


def terms(query: str) -> list[str]:
    """A free-text query as search terms: words only, so no query syntax reaches the engine."""
    return list(dict.fromkeys(_WORD.findall(query.lower())))[:64]


# Vectors kept in memory between searches, over every knowledge base (README, "Knowledge bases").
CACHE_BYTES = 256 * 1024 * 1024


class Candidates:
    """Every embedded chunk of a knowledge base: ids, metadata, one matrix of vectors and its
    row norms (computed once per load, not per search)."""

    def __init__(self, ids: list[str], metadata: list[Metadata], matrix: np.ndarray) -> None:
        import numpy as np

        self.ids = ids
        self.metadata = metadata
        self.matrix = matrix
        self.norms = np.linalg.norm(matrix, axis=1) if matrix.size else np.zeros(len(ids), dtype="<f4")

    @classmethod
    def of(cls, rows: list[tuple[str, bytes, bytes]], decode: Callable[[bytes], Metadata]) -> Candidates:
        """From (id, metadata JSON, float32 blob) rows; rows of another width (an older model) are left out."""
        import numpy as np

        if not rows:
            return cls([], [], np.zeros((0, 0), dtype="<f4"))
        width = len(rows[0][2]) // 4
        kept = [row for row in rows if len(row[2]) == width * 4]
        matrix = np.frombuffer(b"".join(row[2] for row in kept), dtype="<f4").reshape(len(kept), width)
        return cls([row[0] for row in kept], [decode(row[1]) for row in kept], matrix)


class Store(ABC):
    """Every chunk write bumps its knowledge base's revision in the database, so the vectors
    cached here are reloaded after any change, by this process or another sharing the store."""

    def __init__(self) -> None:
        self._cache: OrderedDict[str, tuple[int, Candidates]] = OrderedDict()

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
    async def revision(self, kb_id: str) -> int: ...

    @abstractmethod
    async def load_candidates(self, kb_id: str) -> Candidates: ...

    async def candidates(self, kb_id: str) -> Candidates:
        rev = await self.revision(kb_id)  # read first: a write after it makes the next search reload
        cached = self._cache.get(kb_id)
        if cached is not None and cached[0] == rev:
            self._cache.move_to_end(kb_id)
            return cached[1]
        loaded = await self.load_candidates(kb_id)
        self._cache[kb_id] = (rev, loaded)
        total = sum(c.matrix.nbytes for _, c in self._cache.values())
        while total > CACHE_BYTES and len(self._cache) > 1:
            _, (_, evicted) = self._cache.popitem(last=False)
            total -= evicted.matrix.nbytes
        return loaded
