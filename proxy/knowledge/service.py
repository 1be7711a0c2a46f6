"""The knowledge service: tenancy, ingest (embedding chunks) and search, over any Store.

Used by the HTTP handlers (`proxy.server.knowledge_routes`) and by the request pipeline's
knowledge stage; it knows nothing of either (docs/architecture.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from proxy.api.filters import Filter
from proxy.config import Config, DeclaredKnowledgeBase
from proxy.core.errors import ErrorCode, ErrorType, ProxyError, bad_request
from proxy.core.model import ChatRequest, Message
from proxy.core.stream import CallContext
from proxy.core.target import Target
from proxy.knowledge.embed import Embedder, EmbeddingError
from proxy.knowledge.local_embedder import is_local, missing
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
from proxy.providers.base import Connector

# Hybrid search fuses the best this many of each list (reciprocal rank fusion past it changes
# no top-100 answer in practice, and it bounds the work).
FUSION_DEPTH = 100


# The one completion agentic_rag_config makes before searching (README, "Knowledge bases").
REWRITE_PROMPT = ("Rewrite the user's message as one short search query for a knowledge base. Keep names, "
                  "codes and key terms; drop greetings and filler. Answer with the query only.")
REWRITE_SECONDS = 30.0


@dataclass(slots=True)
class Hit:
    chunk: Chunk
    score: float
    rerank_score: float | None = None


class Rerank(NamedTuple):
    model: str  # `provider/model` with a /rerank endpoint
    threshold: float  # rerank_score below it is dropped
    top_k: int  # the best this many are kept


def kb_rerank(kb: KnowledgeBase) -> Rerank | None:
    """The knowledge base's own rerank setting (orq's names: rerank_model, rerank_threshold)."""
    config = kb.settings.rerank_config
    if not config:
        return None
    return Rerank(config["rerank_model"], config.get("rerank_threshold", 0.5), config.get("top_k", 5))


def kb_rewrite(kb: KnowledgeBase) -> str | None:
    config = kb.settings.agentic_rag_config
    return config["model"] if config else None


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
    def __init__(self, config: Config, connectors: Mapping[str, Connector] | None = None,
                 store: Store | None = None) -> None:
        self.config = config
        self.connectors = connectors or {}
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
        if is_local(model):
            if not param.endswith("embedding_model"):
                raise bad_request(f"`{param}`: {model!r} is an embedding model only", param)
            problem = missing()
            if problem is not None:
                raise bad_request(f"`{param}` {model!r}: {problem}", param)
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

    async def rerank(self, kb: KnowledgeBase, rerank: Rerank, query: str, hits: list[Hit], param: str) -> list[Hit]:
        if not hits:
            return hits
        try:
            scores = await self.embedder.rerank(rerank.model, query, [hit.chunk.text for hit in hits])
        except EmbeddingError as err:
            code = ErrorCode.provider_overloaded if err.status == 503 else ErrorCode.provider_error
            raise ProxyError(err.status, f"Knowledge base {kb.key!r}: {err.message}", type=ErrorType.upstream,
                             param=param, code=code) from None
        for hit, score in zip(hits, scores, strict=True):
            hit.rerank_score = score
        kept = sorted((hit for hit in hits if score_of(hit) >= rerank.threshold), key=lambda h: -score_of(h))
        return kept[:rerank.top_k]

    async def rewrite(self, kb: KnowledgeBase, model: str, query: str, request_id: str, param: str) -> str:
        """One completion turns the query into a search query; an empty answer keeps the query."""
        provider, _, upstream = model.partition("/")
        connector = self.connectors.get(provider)
        if connector is None or not upstream:
            raise bad_request(f"`{param}` must be `provider/model` with a configured provider; got {model!r}", param)
        request = ChatRequest(messages=[Message("system", REWRITE_PROMPT), Message("user", query)],
                              max_tokens=64, temperature=0.0)
        ctx = CallContext(request_id, time.perf_counter() + REWRITE_SECONDS, "knowledge")
        try:
            result = await connector.complete(request, Target(provider, upstream), ctx)
        except ProxyError as err:
            status = err.status if err.status in (502, 503) else 502
            raise ProxyError(status, f"Knowledge base {kb.key!r}: the query rewrite by {model!r} failed: "
                             f"{err.message}", type=ErrorType.upstream, param=param,
                             code=ErrorCode.provider_error) from None
        text = result.choices[0].text.strip() if result.choices else ""
        return text or query

    # -- search ----------------------------------------------------------------------------------------------
    async def search(self, kb: KnowledgeBase, query: str, *, top_k: int | None = None,
                     threshold: float | None = None, search_type: str | None = None,
                     flt: Filter | None = None, param: str = "", rerank: Rerank | None = None,
                     rewrite_model: str | None = None, request_id: str = "") -> list[Hit]:
        """Best first, at most top_k, each passing the threshold (README, "Knowledge bases").
        `rerank`/`rewrite_model` None: the knowledge base's own settings, if any."""
        rewrite_model = rewrite_model or kb_rewrite(kb)
        if rewrite_model is not None:
            query = await self.rewrite(kb, rewrite_model, query, request_id, f"{param}agentic_rag_config.model")
        hits = await self._search(kb, query, top_k, threshold, search_type, flt, param)
        rerank = rerank or kb_rerank(kb)
        if rerank is not None:
            hits = await self.rerank(kb, rerank, query, hits, f"{param}rerank_config.model")
        return hits

    async def _search(self, kb: KnowledgeBase, query: str, top_k: int | None, threshold: float | None,
                      search_type: str | None, flt: Filter | None, param: str) -> list[Hit]:
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
        import numpy as np

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


def score_of(hit: Hit) -> float:
    return hit.rerank_score if hit.rerank_score is not None else hit.score
