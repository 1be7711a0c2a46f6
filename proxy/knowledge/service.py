"""The knowledge service: tenancy, ingest (embedding chunks) and search, over any Store.

Used by the HTTP handlers (`proxy.server.knowledge_routes`) and by the request pipeline's
knowledge stage; it knows nothing of either (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from proxy.api.filters import Filter
from proxy.config import Config, DeclaredKnowledgeBase
from proxy.core.errors import ErrorCode, ErrorType, ProxyError, bad_request
from proxy.knowledge.embed import Embedder, EmbeddingError
from proxy.knowledge.records import Chunk, KnowledgeBase, Settings, now
from proxy.knowledge.scoring import (
    cosine,
    from_blob,
    fuse,
    keyword_score,
    matches,
    to_blob,
)
from proxy.knowledge.sqlite import SQLiteStore
from proxy.knowledge.store import Store

# Hybrid search fuses the best this many of each list (reciprocal rank fusion past it changes
# no top-100 answer in practice, and it bounds the work).
FUSION_DEPTH = 100


@dataclass(slots=True)
class Hit:
    chunk: Chunk
    score: float


def not_found(ident: str, param: str | None = None) -> ProxyError:
    # The same answer whether it does not exist or belongs to another tenant.
    return ProxyError(404, f"Knowledge base {ident!r} not found", type=ErrorType.not_found, param=param,
                      code=ErrorCode.not_found)


def open_store(config: Config) -> Store:
    knowledge = config.knowledge
    assert knowledge is not None
    if knowledge.backend == "postgres":
        # asyncpg is imported only when configured
        from proxy.knowledge.postgres import PostgresStore

        assert knowledge.url is not None
        return PostgresStore(knowledge.url, knowledge.schema)
    return SQLiteStore(knowledge.path)


def _declared(base: DeclaredKnowledgeBase, existing: KnowledgeBase | None) -> KnowledgeBase:
    rs = base.retrieval_settings
    stamp = now()
    return KnowledgeBase(
        id=f"kb_config_{base.key}", key=base.key, owner="", embedding_model=base.embedding_model,
        settings=Settings(rs.retrieval_type, rs.top_k, rs.threshold), description=base.description,
        created=existing.created if existing else stamp, updated=stamp, declared=True, keys=base.keys)


class KnowledgeService:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config)
        assert config.knowledge is not None
        self.knowledge = config.knowledge
        self.template = config.knowledge.template
        self.embedder = Embedder(config.providers, config.knowledge.embedding_batch,
                                 config.knowledge.embedding_timeout_seconds)

    async def start(self) -> None:
        await self.store.open()
        existing = {kb.id: kb for kb in await self.store.bases() if kb.declared}
        for base in self.knowledge.bases:  # created if missing, settings from the config
            kb_id = f"kb_config_{base.key}"
            await self.store.put_base(_declared(base, existing.get(kb_id)))

    async def close(self) -> None:
        await self.embedder.close()
        await self.store.close()

    # -- knowledge bases -------------------------------------------------------------------------------
    async def visible(self, tenant: str) -> list[KnowledgeBase]:
        return [kb for kb in await self.store.bases() if kb.visible_to(tenant)]

    async def find(self, tenant: str, ident: str, param: str | None = None) -> KnowledgeBase:
        """By id or key; a tenant's own base wins over a declared one with the same key."""
        found = [kb for kb in await self.visible(tenant) if ident in (kb.id, kb.key)]
        if not found:
            raise not_found(ident, param)
        found.sort(key=lambda kb: kb.declared)
        return found[0]

    def check_model(self, model: str | None, param: str) -> None:
        if model is None:
            return
        provider = model.partition("/")[0]
        if "/" not in model or provider not in self.config.providers:
            raise bad_request(f"`{param}` must be `provider/model` with a configured provider; got {model!r}", param)

    # -- embeddings ------------------------------------------------------------------------------------------
    async def embed(self, kb: KnowledgeBase, texts: list[str], param: str | None = None) -> list[list[float]]:
        assert kb.embedding_model is not None
        try:
            return await self.embedder.embed(kb.embedding_model, texts)
        except EmbeddingError as err:
            code = ErrorCode.provider_overloaded if err.status == 503 else ErrorCode.provider_error
            raise ProxyError(err.status, f"Knowledge base {kb.key!r}: {err.message}", type=ErrorType.upstream,
                             param=param, code=code) from None

    async def vectors(self, kb: KnowledgeBase, texts: list[str],
                      supplied: list[list[float] | None]) -> list[bytes | None]:
        """Each chunk's vector: the one supplied, else one from the base's model (one batched call)."""
        missing = [i for i, v in enumerate(supplied) if v is None]
        made: dict[int, list[float]] = {}
        if missing and kb.embedding_model is not None:
            made = dict(zip(missing, await self.embed(kb, [texts[i] for i in missing]), strict=True))
        out: list[bytes | None] = []
        for i, vector in enumerate(supplied):
            chosen = vector if vector is not None else made.get(i)
            out.append(None if chosen is None else to_blob(chosen))
        return out

    # -- search ----------------------------------------------------------------------------------------------
    async def search(self, kb: KnowledgeBase, query: str, *, top_k: int | None = None,
                     threshold: float | None = None, search_type: str | None = None,
                     flt: Filter | None = None, param: str = "") -> list[Hit]:
        """Best first, at most top_k, each passing the threshold (README, "Knowledge bases")."""
        kind = search_type or kb.settings.retrieval_type
        limit = top_k if top_k is not None else kb.settings.top_k
        floor = threshold if threshold is not None else kb.settings.threshold
        keyword: list[tuple[str, float]] = []
        vector: list[tuple[str, float]] = []
        # Each list is cut to what can reach the answer: top_k alone, or the depth hybrid fuses.
        depth = limit if kind != "hybrid_search" else max(FUSION_DEPTH, limit)
        if kind in ("keyword_search", "hybrid_search"):
            rows = await self.store.keyword(kb.id, query)
            scored = ((cid, keyword_score(raw)) for cid, raw, metadata in rows if matches(flt, metadata))
            keyword = [(cid, score) for cid, score in scored if score >= floor][:depth]
        if kind == "vector_search" and kb.embedding_model is None:
            raise bad_request(f"Knowledge base {kb.key!r} has no embedding_model: use keyword_search",
                              f"{param}search_type")
        if kind in ("vector_search", "hybrid_search") and kb.embedding_model is not None:
            vector = await self._vector(kb, query, flt, floor, depth, param)
        if kind == "hybrid_search":
            ranked = fuse([cid for cid, _ in keyword], [cid for cid, _ in vector])
        else:
            ranked = keyword or vector
        ranked = ranked[:limit]
        chunks = await self.store.chunks([cid for cid, _ in ranked])
        return [Hit(chunks[cid], score) for cid, score in ranked if cid in chunks]

    async def _vector(self, kb: KnowledgeBase, query: str, flt: Filter | None, floor: float, depth: int,
                      param: str) -> list[tuple[str, float]]:
        (embedded,) = await self.embed(kb, [query], f"{param}query" if param else "query")
        candidates = await self.store.candidates(kb.id)
        if not candidates.ids:
            return []
        q = np.asarray(embedded, dtype="<f4")
        if candidates.matrix.shape[1] != q.shape[0]:
            raise ProxyError(502, f"Knowledge base {kb.key!r}: the query's embedding has {q.shape[0]} dimensions, "
                             f"its chunks {candidates.matrix.shape[1]}", type=ErrorType.upstream,
                             code=ErrorCode.provider_error)
        if flt is None:  # no copy of the matrix, no pass over the metadata
            keep: Sequence[int] = range(len(candidates.ids))
            sims = cosine(candidates.matrix, candidates.norms, q)
        else:
            keep = [i for i, metadata in enumerate(candidates.metadata) if matches(flt, metadata)]
            if not keep:
                return []
            sims = cosine(candidates.matrix[keep], candidates.norms[keep], q)
        passing = np.flatnonzero(sims >= floor)
        if len(passing) > depth:  # only the best `depth` need sorting
            passing = passing[np.argpartition(-sims[passing], depth - 1)[:depth]]
        order = passing[np.argsort(-sims[passing], kind="stable")]
        return [(candidates.ids[keep[i]], float(sims[i])) for i in order]

    def render_context(self, hits: list[Hit]) -> str:
        return self.template.replace("{context}", "\n\n".join(hit.chunk.text for hit in hits))


def vector_of(chunk: Chunk) -> list[float] | None:
    return None if chunk.vector is None else [float(x) for x in from_blob(chunk.vector)]
